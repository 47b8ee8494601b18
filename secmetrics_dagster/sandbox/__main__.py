"""Run the vendor sandbox in the foreground: `python -m secmetrics_dagster.sandbox --port 8800 --fault ...`.

With `--run COMMAND ...` it serves only while COMMAND runs, with every source's variables pointing at it (how
`make dev` starts the UI): when COMMAND exits the sandbox stops, and when the sandbox is stopped (Ctrl-C, SIGTERM,
SIGHUP) COMMAND's whole process group is stopped first, so neither outlives the other.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import Fault, Sandbox
from .server import registered_vendors


class _Stop(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m secmetrics_dagster.sandbox",
        description="Serve fake vendor APIs on 127.0.0.1 until SIGINT/SIGTERM.",
    )
    parser.add_argument("--port", type=int, default=8800, help="port to listen on; 0 picks a free one (default 8800)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated data (default 42)")
    parser.add_argument("--token", default="sandbox-token", help="API token the vendor routes accept")
    parser.add_argument("--latency-ms", type=float, default=0, help="delay before every vendor response")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="ROUTE:KIND[:key=value,...]",
        help="inject a fault, e.g. snyk.issues:429:times=2,retry_after=0 (repeatable)",
    )
    parser.add_argument("--port-file", type=Path, help="write the bound port to this file once listening")
    parser.add_argument(
        "--print-env",
        action="store_true",
        help="once listening, print `export NAME=value` lines pointing every source at this sandbox "
        '(eval "$(...)" style; the process keeps serving)',
    )
    parser.add_argument(
        "--env-file", type=Path, help="once listening, write NAME=value lines pointing every source here (.env)"
    )
    parser.add_argument(
        "--run",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="once listening, run COMMAND (the rest of the line) with every source pointed at this sandbox; "
        "stop when it exits, and stop it (its whole process group) when stopped",
    )
    # Each vendor's volume knobs come from its volume dataclass, so a new vendor needs no change here.
    for name, vendor in sorted(registered_vendors().items()):
        group = parser.add_argument_group(f"{name} volume")
        for f in dataclasses.fields(vendor.volume_type):
            if f.type in (int, "int"):
                group.add_argument(
                    f"--{name}-{f.name.replace('_', '-')}",
                    dest=f"{name}__{f.name}",
                    type=int,
                    metavar="N",
                    default=f.default,
                    help=f"default {f.default}",
                )
    return parser


def _write_port_file(path: Path, port: int) -> None:
    # Readers poll for the file: it must appear complete or not at all.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{port}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def source_environment(url: str, token: str) -> dict[str, str]:
    """Every source's variables for a sandbox at `url` (each source declares its own wiring)."""
    from ..sources import SOURCES  # the sandbox itself never needs the collectors; only this listing does

    env: dict[str, str] = {}
    for source in SOURCES:
        env.update(source.sandbox_env(url, token))
    return env


def _write_env_file(path: Path, env: dict[str, str]) -> None:
    lines = "".join(f"{name}={shlex.quote(value)}\n" for name, value in sorted(env.items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(lines)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """Stop proc and its process group: SIGINT to proc (what Ctrl-C sends `dagster dev`, which then shuts its
    webserver and daemon down in order), then SIGTERM and SIGKILL to whatever is left in the group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(proc.pid):
            return
        os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 10
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            proc.poll()
            time.sleep(0.2)


def run_with_sandbox(command: list[str], env: dict[str, str]) -> int:
    """Run command in its own process group with env until it exits or a stop signal arrives; its exit code."""
    stop: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum)) for sig in STOP_SIGNALS}
    try:
        # Its own session: a terminal's Ctrl-C reaches this process only, which then stops the group in order.
        proc = subprocess.Popen(command, env=env, start_new_session=True)
        while proc.poll() is None and not stop:
            try:
                proc.wait(0.5)
            except subprocess.TimeoutExpired:
                pass
        _stop_group(proc)
        code = proc.wait()
        return code if code >= 0 else 128 - code  # killed by signal N: the shell's 128 + N
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        faults = [Fault.parse(spec) for spec in args.fault]
    except ValueError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    volumes = {}
    for name, vendor in registered_vendors().items():
        knobs = {key.split("__", 1)[1]: value for key, value in vars(args).items() if key.startswith(f"{name}__")}
        try:
            volumes[name] = vendor.volume_type(**knobs)
        except ValueError as exc:
            print(f"sandbox: {exc}", file=sys.stderr)
            return 2

    sandbox = Sandbox(seed=args.seed, token=args.token, latency_ms=args.latency_ms, port=args.port, **volumes)
    sandbox.set_faults(faults)

    def on_signal(signum: int, frame: object) -> None:
        raise _Stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        try:
            sandbox.start()
        except OSError as exc:
            print(f"sandbox: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
            return 1
        if args.print_env or args.env_file:
            env = source_environment(sandbox.url, args.token)
            if args.env_file:
                _write_env_file(args.env_file, env)
            if args.print_env:
                print("".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items())), end="", flush=True)
        if args.port_file:
            _write_port_file(args.port_file, sandbox.port)
        if args.run:
            env = {**os.environ, **source_environment(sandbox.url, args.token)}
            print(f"sandbox listening on {sandbox.url}; every source points at it", file=sys.stderr, flush=True)
            return run_with_sandbox(args.run, env)
        print(f"{'# ' if args.print_env else ''}sandbox listening on {sandbox.url}", flush=True)
        while True:
            time.sleep(3600)
    except _Stop:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
