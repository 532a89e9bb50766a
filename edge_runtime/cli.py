"""``edge-runtime``: the device program (cameras -> model -> score -> select -> spool -> upload).

Every setting of :class:`edge_runtime.config.EdgeConfig` is a flag (``buffer_size`` ->
``--buffer-size``, ``duration_s`` -> ``--duration``) whose help is the field's comment; a YAML file
(``--config``) and ``--set key=value`` give the same settings, explicit flags win. Fused detections
go to stdout as JSON lines (``--detections``), logs to stderr. A user error ends in one line
``error: ...`` and exit status 1. A run whose uploads were all refused by the server (wrong token
or device id) exits with status 3 after its summary; the refused pairs stay in the spool.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path

from msmine import __version__
from msmine.config import load_config, save_config
from msmine.console import configure_logging, run_guarded
from msmine.edge_runtime.config import EdgeConfig

log = logging.getLogger("edge_runtime")


def _field_help() -> dict[str, str]:
    source = inspect.getsource(EdgeConfig)
    return dict(re.findall(r"^\s+(\w+): [^#\n]*#\s*(.*)$", source, flags=re.MULTILINE))


def flag_name(field: str) -> str:
    name = field[:-2] if field.endswith("_s") else field
    return "--" + name.replace("_", "-")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
                           "msg": record.getMessage()})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-runtime",
        description="Run a model on a visible+thermal camera pair, mine the informative pairs within an upload "
                    "budget, spool them durably and upload them to a collection server.",
    )
    parser.add_argument("--version", action="version", version=f"msmine {__version__}")
    parser.add_argument("--config", help="YAML file with EdgeConfig settings")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="log line format on stderr")
    helps = _field_help()
    for field in dataclasses.fields(EdgeConfig):
        default = field.default
        text = helps.get(field.name, "")
        if "(default:" not in text:  # a comment that names its own default says it better than repr('')
            text = f"{text} (default: {default!r})"
        kwargs = {"dest": field.name, "default": None, "help": text}
        if isinstance(default, bool):
            parser.add_argument(flag_name(field.name), action=argparse.BooleanOptionalAction, **kwargs)
        else:
            metavar = flag_name(field.name)[2:].upper().replace("-", "_")
            parser.add_argument(flag_name(field.name), type=type(default), metavar=metavar, **kwargs)
    return parser


def resolve_config(args: argparse.Namespace) -> EdgeConfig:
    cfg = load_config(EdgeConfig, args.config, args.set)
    for field in dataclasses.fields(EdgeConfig):
        value = getattr(args, field.name)
        if value is not None:
            setattr(cfg, field.name, value)
    if not cfg.token:
        cfg.token = os.environ.get("MSMINE_TOKEN", "")
    return cfg


def _install_signal_handlers(pipeline) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        log.info("%s received", signal.Signals(signum).name)
        pipeline.request_stop()
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


EXIT_NOTHING_UPLOADED = 3  # the server refused every upload of the run (fix the token / device id)


def _write_best_effort(what: str, write) -> None:
    """The run's records beside the spool; a full or read-only disk must not end the run in a traceback."""
    try:
        write()
    except OSError as exc:
        log.warning("cannot write %s: %s", what, exc.strerror or exc)


def run(args: argparse.Namespace) -> int:
    from msmine.edge_runtime.pipeline import EdgePipeline

    cfg = resolve_config(args)
    pipeline = EdgePipeline.from_config(cfg)
    cfg = pipeline.cfg  # with the default spool directory filled in
    spool_dir = Path(cfg.spool_dir)
    _write_best_effort(str(spool_dir / "config.yaml"), lambda: save_config(
        dataclasses.replace(cfg, token="***" if cfg.token else ""), spool_dir / "config.yaml"))
    _install_signal_handlers(pipeline)
    summary = pipeline.run(cfg.duration_s)
    _write_best_effort(str(spool_dir / "last_run.json"),
                       lambda: (spool_dir / "last_run.json").write_text(json.dumps(summary, indent=2) + "\n"))
    if summary["upload"]["refused"] and not summary["uploaded"]:
        return EXIT_NOTHING_UPLOADED
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if args.log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(_JsonFormatter())
    return run_guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
