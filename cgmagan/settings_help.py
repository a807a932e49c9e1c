"""``python run.py --help`` and ``cgmagan-explain --help``: every setting of the composed config,
its value and its one-line description. The descriptions are the config files' own comments (one
source): the comment at the end of a setting's line, or the comment line(s) right above it.
"""

from __future__ import annotations

import re
import sys
from importlib import resources
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w]*)\s*:(?P<rest>.*)$")


def _trailing_comment(rest: str) -> str:
    """The comment after a value, if any (a '#' outside quotes, after a space)."""
    quote = None
    for i, ch in enumerate(rest):
        if ch in "\"'" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or rest[i - 1] in " \t"):
            return rest[i + 1 :].strip()
    return ""


def file_descriptions(text: str) -> dict[str, str]:
    """``{dotted key: description}`` for the keys of one YAML file (nesting by indentation)."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        entry = re.match(r"^\s*-\s*(?:override\s+)?/?(?P<group>[\w/]+)\s*:.*", line)
        if entry and (comment := _trailing_comment(line.split(":", 1)[1])):  # a defaults entry: the group itself
            out.setdefault(entry["group"].replace("/", "."), comment)
        match = _KEY.match(line)
        if not match or stripped.startswith("-"):
            above = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([k for _, k in stack] + [match["key"]])
        comment = _trailing_comment(match["rest"]) or (" ".join(above) if above and indent > 0 or len(above) == 1 else "")
        if comment:
            out[key] = comment
        stack.append((indent, match["key"]))
        above = []
    return out


def _package_of(text: str) -> str | None:
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    match = re.match(r"#\s*@package\s+(\S+)", first)
    return match[1] if match else None


def all_descriptions(root: Path | None = None) -> dict[str, str]:
    """Descriptions of every setting the config tree can hold, by its path in the composed config:
    a group's files describe ``<group>.<key>`` (the first option that describes a key wins, the
    group's default-like options first), the primary config its own keys."""
    root = root or Path(str(resources.files("cgmagan.conf")))
    out: dict[str, str] = {}
    def order(path: Path):  # the primary config, then groups (their base options first), then global presets
        return (_package_of(path.read_text()) == "_global_", path.parent != root, path.stem not in ("default", "small", "cpu"),
                str(path))  # fmt: skip

    for path in sorted(root.rglob("*.yaml"), key=order):
        text = path.read_text()
        group = path.parent.relative_to(root).as_posix()
        if group.startswith("hydra"):
            continue  # Hydra's own settings (python run.py --hydra-help)
        # experiments and debug presets sit at the top level: they describe only what no group does
        prefix = "" if group == "." or _package_of(text) == "_global_" else group.replace("/", ".") + "."
        for key, text_ in file_descriptions(text).items():
            out.setdefault(prefix + key, text_)
    return out


def leaves(node, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted path, value) of every setting, interpolations shown as written; keys that Hydra's
    instantiate reads (``_target_``, ``_partial_``...) are part of their object, not settings."""
    out = []
    items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else []
    for key, _ in items:
        if str(key).startswith("_") and str(key).endswith("_"):
            continue
        path = f"{prefix}{key}"
        child = node._get_node(key)
        if isinstance(child, DictConfig) and len(child) and not child._is_interpolation():
            sub = leaves(child, path + ".")
            out += sub if sub else [(path, _written(child))]
        else:
            out.append((path, _written(child)))
    return out


def _written(child) -> object:
    if child._is_interpolation():
        return child._value()
    if isinstance(child, DictConfig | ListConfig):
        return OmegaConf.to_container(child, resolve=False)
    return child._value()


def describe(path: str, descriptions: dict[str, str]) -> str:
    """A setting's description; one nested inside an object (``gan.module.optimizer_g.lr``) falls back on the closest described parent's."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        text = descriptions.get(".".join(parts[:end]))
        if text:
            return text if end == len(parts) else f"(of {'.'.join(parts[:end])}: {text})"
    return ""


def settings_help(cfg: DictConfig, header: str = "", descriptions: dict[str, str] | None = None) -> str:
    descriptions = all_descriptions() if descriptions is None else descriptions
    lines = [header] if header else []
    group = None
    for path, value in leaves(cfg):
        top = path.split(".")[0]
        if top != group and "." in path:
            lines.append(f"\n{top}:")
        group = top if "." in path else None
        lines.append(f"  {path} = {value!r}" + (f"    # {d}" if (d := describe(path, descriptions)) else ""))
    return "\n".join(lines) + "\n"


def help_requested(argv: list[str]) -> bool:
    return "--help" in argv or "-h" in argv


def help_text(config_name: str, argv: list[str], groups: bool = True) -> str:
    """Hydra's help header, the config groups and their options (``groups``), every setting of
    ``config_name`` composed with the command line's overrides, with its description; the footer."""
    from hydra import compose, initialize_config_module

    overrides = [a for a in argv if not a.startswith("-")]
    with initialize_config_module("cgmagan.conf", version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    header, footer = OmegaConf.select(cfg, "hydra.help.header"), OmegaConf.select(cfg, "hydra.help.footer")
    with open_dict(cfg):
        del cfg["hydra"]
    lines = [header.rstrip()] if header and config_name == "config" else []
    if groups:
        root = Path(str(resources.files("cgmagan.conf")))
        lines += ["", "Config groups (GROUP=OPTION; experiment and debug as +experiment=NAME, debug=NAME):"]
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "hydra"))):
            options = sorted(f.stem for f in folder.glob("*.yaml"))
            lines.append(f"  {folder.name}: {', '.join(options)}")
    lines += ["", f"Settings ({' '.join(overrides) or 'as configured'}): KEY=VALUE on the command line", settings_help(cfg)]
    if footer and config_name == "config":
        lines.append(footer.rstrip())
    return "\n".join(lines) + "\n"


def print_help_if_asked(config_name: str, argv: list[str], groups: bool = True) -> bool:
    """Print :func:`help_text` when ``argv`` asks for --help (Hydra's own: --hydra-help)."""
    if not help_requested(argv):
        return False
    sys.stdout.write(help_text(config_name, argv, groups))
    return True
