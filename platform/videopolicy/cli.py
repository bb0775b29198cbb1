"""What the entry scripts in jobs/ share: the config arguments, logging, loading a row, the store.

    parser = cli.parser(__doc__)
    cli.add_config_args(parser)               # --sweep, --row, --store, --set KEY=VALUE (repeatable)
    args = parser.parse_args(argv)
    cli.setup_logging()
    sweep, row, cfg = cli.load_row(args)      # exits with "error: ..." on a bad file, row or --set
    store = cli.store_of(args, cfg)

`--set train.stage1.steps=5 --set eval.tasks=[Lift]` overrides dotted keys of the typed config, for
the base and every row of a sweep (after the rows' own overrides). Values are YAML (5, true, [a, b]);
keys and types are checked like the file's (unknown keys get the nearest name) before the file is
loaded, and the resolved configs are validated as a whole, as a sweep file is. Configs are never
changed after validation: a flag that changes the config (e.g. --skip-bad) is one more override.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

import yaml

from videopolicy.config import (
    ConfigError,
    PlatformConfig,
    SweepConfig,
    check_overrides,
    load_config,
    load_sweep,
    merge_overrides,
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parser(doc: Optional[str]) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)


def add_config_args(p: argparse.ArgumentParser, *, source: str = "sweep", sweep: str = "sweeps/smoke.yaml",
                    config: Optional[str] = None, row: bool = True, store: bool = True) -> None:
    """The config arguments: --sweep (source "sweep"), --config ("config") or either ("either": one of
    them, else `load_row`'s default), then --row, --store and --set."""
    if source == "either":
        src = p.add_mutually_exclusive_group()
        src.add_argument("--config", help="a config file (or a sweep file's base)")
        src.add_argument("--sweep", help="a sweep file; with --row")
    elif source == "config":
        p.add_argument("--config", default=config, help="config or sweep YAML (its base is used)")
    else:
        p.add_argument("--sweep", default=sweep, help="sweep YAML (base config + named rows)")
    if row:
        p.add_argument("--row", default=None, help="row name (default: the first row)")
    if store:
        p.add_argument("--store", default=None, help="stage output root (default: the config's store)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="override a config key (every row of a sweep), e.g. --set train.stage1.steps=5; "
                        "the value is YAML; repeatable")


def parse_sets(items: list[str], errors: list[str]) -> dict:
    """['a.b=1', 'a.c=[x]'] -> {'a': {'b': 1, 'c': ['x']}}; malformed items are appended to `errors`."""
    out: dict = {}
    for item in items:
        key, eq, text = item.partition("=")
        parts = key.strip().split(".")
        if not eq or not all(parts):
            errors.append(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. train.stage1.steps=5")
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            errors.append(f"--set {item!r}: the value is not valid YAML ({e.problem if hasattr(e, 'problem') else e})")
            continue
        node = out
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.setdefault(part, {}), dict):
                errors.append(f"--set {item!r}: {'.'.join(parts[:i + 1])} is already set to a value")
                break
            node = node[part]
        else:
            if isinstance(node.get(parts[-1]), dict):
                errors.append(f"--set {item!r}: {key} is already set key by key")
            else:
                node[parts[-1]] = value
    return out


def add_skip_bad(p: argparse.ArgumentParser) -> None:
    """--skip-bad: a flag for the override demos.skip_bad=true (applied by `overrides_of`, not afterwards:
    skip_bad is part of the data keys, and configs are not changed after validation)."""
    p.add_argument("--skip-bad", action="store_true",
                   help="skip invalid demos (reported) instead of failing (= --set demos.skip_bad=true)")


def overrides_of(args: argparse.Namespace, extra: Optional[dict] = None) -> dict:
    """The --set overrides (checked against the config's keys and types), merged with `extra` (flags)."""
    errors: list[str] = []
    sets = parse_sets(getattr(args, "sets", []) or [], errors)
    try:
        check_overrides(sets, "--set ")
    except ConfigError as e:
        errors += e.errors
    if errors:
        raise ConfigError(errors)
    flags = merge_overrides({"demos": {"skip_bad": True}}, extra or {}) if getattr(args, "skip_bad", False) else extra
    return merge_overrides(flags or {}, sets)  # --set wins over a flag


def load_row(args: argparse.Namespace, check_files: bool = True, extra: Optional[dict] = None,
             default_config: Optional[str] = None) -> tuple[Optional[SweepConfig], str, PlatformConfig]:
    """(sweep, row name, its config) from --sweep and --row, or from --config (else `default_config`; then
    no sweep and row ""), with the --set and `extra` overrides; exits with 'error: ...' on any problem."""
    try:
        overrides = overrides_of(args, extra)
        if getattr(args, "sweep", None):
            sweep = load_sweep(args.sweep, check_files=check_files, overrides=overrides)
            name = getattr(args, "row", None) or sweep.rows[0][0]
            return sweep, name, sweep.row(name)
        return None, "", load_config(getattr(args, "config", None) or default_config, overrides)
    except (ConfigError, KeyError) as e:
        sys.exit(f"error: {e}")


def load_sweep_args(args: argparse.Namespace, check_files: bool = True, extra: Optional[dict] = None) -> SweepConfig:
    """The sweep of --sweep with --set and `extra` overrides; exits with 'error: ...' when anything is wrong."""
    try:
        return load_sweep(args.sweep, check_files=check_files, overrides=overrides_of(args, extra))
    except ConfigError as e:
        sys.exit(f"error: {e}")


def store_of(args: argparse.Namespace, cfg: PlatformConfig) -> str:
    """--store, else the config's store, as an absolute path (a URL stays as it is)."""
    store = getattr(args, "store", None) or cfg.store
    return store if "://" in store else str(Path(store).expanduser().resolve())
