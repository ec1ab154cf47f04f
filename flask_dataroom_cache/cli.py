"""``flask dataroom-cache``: stats, ping, inspect, invalidate, clear, warm.

Registered on every app by ``init_app`` (:func:`register`). Exit codes: ``0`` ok, ``1``
backend unreachable (or a warmer failed, or ``inspect`` found no entry), ``2`` usage
error. Output goes through ``click.echo``; diagnostics through the ``flask_dataroom_cache``
logger. ``inspect`` builds its report in ``inspection.py``.

The CLI runs in its own process: its counters (``stats``) are this process's, and with
the in-memory backend (no ``REDIS_URL``) the cache it sees is its own, not the server
processes'. ``invalidate`` and ``clear`` talk to Redis directly (not through the
breaker's queue, which would die with the process) and fail with exit code 1 if Redis
does not answer.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import click
from flask import Flask
from flask.cli import AppGroup

from .backends.base import Backend, BackendError
from .metrics import PUBLISH_INTERVAL, build_stats, merge_stats, read_published
from .tags import EPOCH_TAG
from .warmers import add_warmer, warmers

if TYPE_CHECKING:  # pragma: no cover
    from .state import CacheState

__all__ = [
    "EXIT_NOT_FOUND",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "add_warmer",
    "group",
    "register",
    "warmers",
]

log = logging.getLogger("flask_dataroom_cache")

EXIT_UNREACHABLE = 1
#: ``inspect``: no entry under the key.
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2

group = AppGroup("dataroom-cache", help="Inspect and operate this app's flask-dataroom-cache.")


def register(app: Flask, state: CacheState) -> None:
    """Add the ``dataroom-cache`` command group to ``app.cli`` (called by ``init_app``)."""
    from .metrics import install

    install(app, state)  # periodic stats snapshots in Redis, for ``stats --all``
    if "dataroom-cache" not in app.cli.commands:
        app.cli.add_command(group)


def unregister(app: Flask, state: CacheState) -> None:
    """Undo :func:`register`'s command group (the publisher detaches itself)."""
    if app.cli.commands.get("dataroom-cache") is group:
        del app.cli.commands["dataroom-cache"]


# -- helpers ----------------------------------------------------------------------------
def _state() -> CacheState:
    from .extension import DataRoomCache

    try:
        return DataRoomCache.state()
    except RuntimeError as exc:
        raise click.UsageError(str(exc)) from None


def _direct(backend: Backend) -> Backend:
    """The backend behind the breaker: the CLI must fail loudly, not queue and exit."""
    return getattr(backend, "primary", backend)


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    click.get_current_context().exit(EXIT_UNREACHABLE)


def _per_process_note(backend: Backend) -> None:
    if _direct(backend).name == "memory":
        click.echo(
            "note: the in-memory backend is per process; this command only sees the "
            "CLI process's own cache (set REDIS_URL to share one cache)",
            err=True,
        )


def _fmt_bytes(n: Any) -> str:
    if not isinstance(n, int | float):
        return "n/a"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


_COLUMNS = ("hits", "misses", "bypasses", "sets", "invalidations", "errors", "fallback_serves")


# -- commands -----------------------------------------------------------------------------
@group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the stats() dict as JSON.")
@click.option("--prometheus", is_flag=True, help="Print the Prometheus text exposition.")
@click.option(
    "--all",
    "all_processes",
    is_flag=True,
    help=f"Sum the snapshots every serving process publishes to Redis "
    f"(every {PUBLISH_INTERVAL:.0f} s) instead of this process's counters.",
)
def stats_command(as_json: bool, prometheus: bool, all_processes: bool) -> None:
    """Counters, hit ratio and backend/breaker state (this process, or --all)."""
    state = _state()
    if as_json and prometheus:
        raise click.UsageError("--json and --prometheus are exclusive")
    if all_processes:
        if prometheus:
            raise click.UsageError("--all and --prometheus are exclusive")
        _stats_all(state, as_json)
        return
    if prometheus:
        try:
            from prometheus_client import generate_latest
        except ImportError:
            raise click.UsageError(
                "--prometheus needs prometheus_client: pip install 'flask-dataroom-cache[metrics]'"
            ) from None
        registry = state.extension.prometheus_registry()
        click.echo(generate_latest(registry).decode(), nl=False)
        return
    data = build_stats(state)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    be = data["backend"]
    click.echo(
        f"backend {be['name']}  prefix {be['prefix']}  breaker {be['breaker']}  "
        f"pending invalidations {be['pending_invalidations']}  "
        f"enabled {str(be['enabled']).lower()}"
    )
    click.echo(_counter_table(data))
    click.echo("(counters of this process since it started; --all for the serving processes)")


def _counter_table(data: dict[str, Any]) -> str:
    rows = [["endpoint", *_COLUMNS, "hit_ratio"]]

    def row(name: str, counts: dict[str, Any]) -> list[str]:
        ratio = counts.get("hit_ratio")
        return [
            name,
            *(str(counts.get(c, 0)) for c in _COLUMNS),
            "-" if ratio is None else f"{ratio:.1%}",
        ]

    for name in sorted(data["endpoints"]):
        rows.append(row(name, data["endpoints"][name]))
    rows.append(row("TOTAL", data["total"]))
    return _table(rows)


def _stats_all(state: CacheState, as_json: bool) -> None:
    try:
        snapshots = read_published(state)
    except Exception as exc:  # redis-py errors: the backend did not answer
        log.debug("dataroom-cache stats --all: backend unreachable: %s", exc)
        _fail(f"backend unreachable: {exc}")
        return
    if snapshots is None:
        raise click.UsageError(
            "--all needs a standalone or Sentinel Redis (REDIS_URL): the memory backend "
            "is per process and Cluster snapshots are not collected"
        )
    merged = merge_stats(snapshots)
    if as_json:
        click.echo(json.dumps(merged, indent=2, sort_keys=True))
        return
    click.echo(
        f"{len(snapshots)} process(es) published stats under prefix "
        f"{state.settings.key_prefix!r} in the last {3 * PUBLISH_INTERVAL:.0f} s"
    )
    for proc in merged["processes"]:
        click.echo(
            f"  {proc.get('host')}:{proc.get('pid')} {proc.get('app')}  "
            f"breaker {proc.get('breaker')}  "
            f"pending {proc.get('pending_invalidations')}"
        )
    click.echo(_counter_table(merged))


@group.command("ping")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def ping_command(as_json: bool) -> None:
    """Backend, round-trip latency, memory used and keys under this app's prefix."""
    state = _state()
    backend = _direct(state.store.backend)
    try:
        latency = backend.ping()
    except BackendError as exc:
        log.debug("dataroom-cache ping: backend %s unreachable: %s", backend.name, exc)
        _fail(f"backend {backend.name} unreachable: {exc}")
        return
    try:
        info = backend.info()
    except BackendError as exc:  # reachable, but INFO is refused (ACL, some proxies)
        info = {"info_error": str(exc)}
    result = {
        "backend": backend.name,
        "prefix": state.settings.key_prefix,
        "latency_ms": round(latency * 1000, 3),
        "memory_bytes": info.get("memory_bytes"),
        "keys": info.get("keys"),
        "breaker": getattr(state.store.backend, "state", "closed"),
    }
    for extra in ("maxmemory", "maxmemory_policy", "masters", "info_error"):
        if extra in info:
            result[extra] = info[extra]
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    click.echo(f"backend   {result['backend']}")
    click.echo(f"latency   {result['latency_ms']:.3f} ms")
    memory = _fmt_bytes(result["memory_bytes"])
    if "maxmemory" in result:
        limit = _fmt_bytes(result["maxmemory"]) if result["maxmemory"] else "no limit"
        memory += f" (maxmemory {limit}, policy {result.get('maxmemory_policy')})"
    click.echo(f"memory    {memory}")
    keys = "n/a" if result["keys"] is None else result["keys"]
    click.echo(f"keys      {keys} under prefix {result['prefix']!r}")
    click.echo(f"breaker   {result['breaker']} (this process)")
    if "info_error" in result:
        click.echo(f"note: {result['info_error']}", err=True)
    _per_process_note(state.store.backend)


@group.command("inspect")
@click.argument("key", required=False)
@click.option("--view", "url", metavar="URL", help="The entry a GET of URL reads.")
@click.option("--user", metavar="ID", help="With --view: the user a per-user view is keyed for.")
@click.option("--header", "headers", multiple=True, metavar="'N: V'", help="With --view: vary=.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect_command(
    key: str | None, url: str | None, user: str | None, headers: tuple[str, ...], as_json: bool
) -> None:
    """One entry: size, TTL, tags (which one made it stale), status, headers, soft expiry.

    Exit code 0 when an entry is stored under the key, 1 when there is none (or the
    backend is unreachable), 2 for a usage error or a URL that is no cached view."""
    from . import inspection

    state = _state()
    if (key is None) == (url is None) or (url is None and (user or headers)):
        raise click.UsageError("give KEY, or --view URL [--user ID] [--header 'NAME: VALUE']")
    try:
        report = inspection.inspect_entry(
            None,  # the current app: ``state``'s
            key,
            view=url,
            user=user,
            headers=inspection.parse_headers(headers),
            direct=True,
        )
    except (ValueError, inspection.NotACachedView) as exc:
        raise click.UsageError(str(exc)) from None
    except BackendError as exc:
        log.debug("dataroom-cache inspect: backend unreachable: %s", exc)
        _fail(f"backend {state.store.backend.name} unreachable: {exc}")
        return
    click.echo(report.to_json() if as_json else inspection.render(report))  # notes included
    if not report.found:
        click.get_current_context().exit(EXIT_NOT_FOUND)


@group.command("invalidate")
@click.argument("tags", nargs=-1)
@click.option(
    "--all", "everything", is_flag=True, help="Bump the namespace epoch: every entry misses."
)
def invalidate_command(tags: tuple[str, ...], everything: bool) -> None:
    """Invalidate TAGS now (e.g. dataroom:42 folder:7/contents user:3), or --all."""
    state = _state()
    if everything == bool(tags):
        raise click.UsageError("give TAGS or --all (not both)")
    if everything:
        tags = (EPOCH_TAG,)
    for tag in tags:
        if not tag or "\n" in tag or tag != tag.strip():
            raise click.BadParameter(f"invalid tag {tag!r}", param_hint="TAGS")
    backend = _direct(state.store.backend)
    try:
        backend.invalidate(list(dict.fromkeys(tags)))
    except BackendError as exc:
        log.debug("dataroom-cache invalidate: backend %s unreachable: %s", backend.name, exc)
        _fail(f"backend {backend.name} unreachable, nothing was invalidated: {exc}")
        return
    if everything:
        click.echo(f"bumped the epoch of prefix {state.settings.key_prefix!r}: every entry misses")
    else:
        click.echo(f"invalidated {len(set(tags))} tag(s) on {backend.name}: {' '.join(tags)}")
    _per_process_note(state.store.backend)


@group.command("clear")
def clear_command() -> None:
    """Remove every key under this app's prefix (Redis: SCAN + UNLINK in batches)."""
    state = _state()
    backend = _direct(state.store.backend)
    try:
        removed = state.store.clear()
    except BackendError as exc:
        log.debug("dataroom-cache clear: backend %s unreachable: %s", backend.name, exc)
        _fail(f"backend {backend.name} unreachable, nothing was cleared: {exc}")
        return
    click.echo(
        f"removed {removed} key(s) under prefix {state.settings.key_prefix!r} on {backend.name}"
    )
    _per_process_note(state.store.backend)


@group.command("warm")
@click.argument("names", nargs=-1)
def warm_command(names: tuple[str, ...]) -> None:
    """Run the functions registered with @cache.warmer (all, or only NAMES)."""
    state = _state()
    table = warmers(state.extension)
    unknown = [n for n in names if n not in table]
    if unknown:
        known = ", ".join(table) or "none registered"
        raise click.BadParameter(
            f"unknown warmer(s) {', '.join(unknown)} (known: {known})", param_hint="NAMES"
        )
    selected = [(n, table[n]) for n in (names or tuple(table))]
    if not selected:
        click.echo("no warmers registered (decorate functions with @cache.warmer)")
        return
    backend = _direct(state.store.backend)
    try:
        backend.ping()
    except BackendError as exc:
        log.debug("dataroom-cache warm: backend %s unreachable: %s", backend.name, exc)
        _fail(f"backend {backend.name} unreachable, nothing was warmed: {exc}")
        return
    _per_process_note(state.store.backend)
    failed = 0
    for name, fn in selected:
        start = time.perf_counter()
        try:
            result = fn()
        except Exception:
            failed += 1
            log.exception("cache warmer %s failed", name)
            click.echo(f"{name}: FAILED (see the log)", err=True)
            continue
        took = (time.perf_counter() - start) * 1000
        detail = f" ({result} entries)" if isinstance(result, int) else ""
        click.echo(f"{name}: ok{detail} in {took:.0f} ms")
    if failed:
        click.get_current_context().exit(EXIT_UNREACHABLE)
