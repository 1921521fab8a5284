"""Reading a user's YAML file: safe_load only, bounded in size, nesting depth and alias expansion, duplicate keys
refused, every failure one line. A file without aliases is bounded by its size alone; aliases may add at most
MAX_ALIAS_EXPANSION values to it once expanded."""

from __future__ import annotations

from pathlib import Path

MAX_YAML_BYTES = 16 * 2**20  # far above any model or device file; keeps a stray huge file from exhausting memory
MAX_YAML_DEPTH = 64  # model.yaml and device files nest 6 levels; a bracket bomb would exhaust Python's stack
MAX_ALIAS_EXPANSION = 100_000  # values aliases may add beyond the file's own: "billion laughs" adds 10^9


class YamlFileError(ValueError):
    """A YAML file that cannot be read or parsed; the message is one line naming the file."""


def _bounded_loader():
    import yaml

    class Limit(yaml.YAMLError):
        def __init__(self, problem: str, mark):
            super().__init__(problem)
            self.problem, self.problem_mark = problem, mark

    class BoundedLoader(yaml.SafeLoader):
        """SafeLoader that refuses deep nesting, keys given twice in one mapping, and alias bombs."""

        depth = 0

        def compose_node(self, parent, index):
            self.depth += 1
            try:
                if self.depth > MAX_YAML_DEPTH:
                    raise Limit(f"nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                        continue  # merge keys may be overridden; complex keys are refused by the base class
                    if key_node.value in seen:
                        raise Limit(f"key {key_node.value!r} is given twice", key_node.start_mark)
                    seen.add(key_node.value)
            return super().construct_mapping(node, deep)

    def expanded_size(node, sizes: dict) -> int:
        """Nodes of the document once every alias is expanded (each shared node counted where it is used)."""
        if id(node) not in sizes:
            children = node.value if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) else ()
            pairs = [part for child in children for part in (child if isinstance(child, tuple) else (child,))]
            sizes[id(node)] = 1 + sum(expanded_size(child, sizes) for child in pairs)
        return sizes[id(node)]

    def load(text: str):
        loader = BoundedLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            sizes = {}  # one entry per node of the file: its own size, aliases not expanded
            if expanded_size(node, sizes) - len(sizes) > MAX_ALIAS_EXPANSION:
                where, mark = "the document", node.start_mark
                if isinstance(node, yaml.MappingNode):  # name the top-level key that holds the expansion
                    key, _ = max(node.value, key=lambda pair: sizes[id(pair[1])])
                    where, mark = f"{key.value!r}" if isinstance(key, yaml.ScalarNode) else where, key.start_mark
                raise Limit(f"aliases expand {where} by more than {MAX_ALIAS_EXPANSION} values", mark)
            return loader.construct_document(node)
        finally:
            loader.dispose()

    return load, Limit


def read_yaml(path, what: str = "file"):
    """The document in `path` (yaml.safe_load). Raises YamlFileError: missing, unreadable, too large, not UTF-8 text,
    not YAML, nested too deep, a key given twice in one mapping, or aliases that expand past MAX_ALIAS_EXPANSION."""
    import yaml

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise YamlFileError(f"{path}: {what} is {size} bytes, more than the {MAX_YAML_BYTES} allowed")
        text = path.read_text()
    except FileNotFoundError:
        raise YamlFileError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise YamlFileError(f"{path}: is a directory, not a {what}") from None
    except UnicodeDecodeError as err:
        raise YamlFileError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise YamlFileError(f"{path}: cannot read {what} ({err.strerror})") from None
    load, limit = _bounded_loader()
    try:
        return load(text)
    except limit as err:
        raise YamlFileError(f"{path}: line {err.problem_mark.line + 1}: {err.problem}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}: line {mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise YamlFileError(f"{where}: not valid YAML ({problem})") from None
