"""The UNets simdq knows without torch: presets shipped as JSON in this folder, and specs from a user's config.

Nothing is downloaded: presets are the JSON files here; users give a config inline or a local config.json.
Building a spec into a torch module is simdq.model.unets' job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from diagnostics import did_you_mean

from ..errors import SimdqError

PRESET_DIR = Path(__file__).parent
UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
SINGLE_LAYER = "SingleLayer"  # model.layer: one conv or linear by shape, built by simdq.model.unets, not diffusers
DEFAULT_CONTEXT_LENGTH = 77


@dataclass(frozen=True)
class UNetSpec:
    """A UNet to build: diffusers class name and config, plus what the config cannot say.

    context_length: tokens of the cross-attention context (conditional UNets).
    attention_heads: heads per attention layer where the original (e.g. LDM's num_heads=8) has a fixed
    head count that UNet2DModel's single attention_head_dim cannot express; heads change no MACs, only
    the size of the attention score matrices.
    """

    name: str
    unet_class: str
    config: dict = field(hash=False)
    description: str = ""
    context_length: int = DEFAULT_CONTEXT_LENGTH
    attention_heads: int = 0


@lru_cache(maxsize=None)
def _preset_files() -> dict:
    return {path.stem: json.loads(path.read_text()) for path in sorted(PRESET_DIR.glob("*.json"))}


def preset_names() -> dict:
    """Every accepted preset name (canonical and alias) -> canonical name."""
    names = {}
    for name, data in _preset_files().items():
        names[name] = name
        for alias in data.get("aliases", []):
            names[alias] = name
    return names


def check_preset_name(name: str) -> str:
    names = preset_names()
    canonical = names.get(name.lower())
    if canonical is None:
        aliases = ", ".join(sorted(set(names) - set(_preset_files())))
        raise ValueError(f"unknown preset {name!r}{did_you_mean(name.lower(), names)}; allowed: "
                         f"{', '.join(sorted(_preset_files()))} (aliases: {aliases})")
    return canonical


def preset_spec(name: str) -> UNetSpec:
    canonical = check_preset_name(name)
    data = _preset_files()[canonical]
    return UNetSpec(
        name=canonical,
        unet_class=data["class"],
        config=data["config"],
        description=data["description"],
        context_length=data.get("context_length", DEFAULT_CONTEXT_LENGTH),
        attention_heads=data.get("attention_heads", 0),
    )


def config_spec(unet_class: str, config: dict, name: str) -> UNetSpec:
    if unet_class not in UNET_CLASSES:
        raise SimdqError(f"{name}: {unet_class!r} is not a supported UNet class; allowed: {', '.join(UNET_CLASSES)}")
    return UNetSpec(name=name, unet_class=unet_class, config=dict(config))


def config_file_spec(path: str, where: str) -> UNetSpec:
    from diagnostics.yaml_files import MAX_YAML_BYTES

    try:
        if Path(path).stat().st_size > MAX_YAML_BYTES:
            raise SimdqError(f"{where}: config file {path!r} is larger than the {MAX_YAML_BYTES} bytes allowed")
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SimdqError(f"{where}: config file {path!r} does not exist") from None
    except OSError as err:
        raise SimdqError(f"{where}: cannot read config file {path!r} ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise SimdqError(f"{where}: config file {path!r} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise SimdqError(f"{where}: {path!r} is not JSON (line {err.lineno}: {err.msg})") from None
    except RecursionError:
        raise SimdqError(f"{where}: config file {path!r} nests deeper than a diffusers config can") from None
    if not isinstance(data, dict) or data.get("_class_name") not in UNET_CLASSES:
        found = data.get("_class_name") if isinstance(data, dict) else type(data).__name__
        raise SimdqError(
            f"{where}: {path!r} is not a diffusers UNet config (its _class_name is {found!r}; "
            f"allowed: {', '.join(UNET_CLASSES)})"
        )
    config = {k: v for k, v in data.items() if not k.startswith("_")}
    return UNetSpec(name=Path(path).stem, unet_class=data["_class_name"], config=config)
