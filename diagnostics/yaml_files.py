"""Reading a user's YAML file: safe_load only, bounded in size, every failure one line."""

from __future__ import annotations

from pathlib import Path

MAX_YAML_BYTES = 16 * 2**20  # far above any model or device file; keeps a stray huge file from exhausting memory


class YamlFileError(ValueError):
    """A YAML file that cannot be read or parsed; the message is one line naming the file."""


def read_yaml(path, what: str = "file"):
    """The document in `path` (yaml.safe_load). Raises YamlFileError: missing, unreadable, too large or not YAML."""
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
        raise YamlFileError(f"{path}: not a text file ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise YamlFileError(f"{path}: cannot read {what} ({err.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}: line {mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise YamlFileError(f"{where}: not valid YAML ({problem})") from None
