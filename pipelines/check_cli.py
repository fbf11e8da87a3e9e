"""What `spanqa check --index DIR [--repair]` and `spanqa backup --index DIR DEST` do (their options
are declared in spanqa.pipelines.cli). check verifies an index (each shard of a sharded one) and,
asked to, brings it back to its last consistent state, saying what it dropped; backup makes a
consistent copy of a live index (see spanqa.indexing.store.backup)."""

from __future__ import annotations

import argparse
import json
import sys

from spanqa.indexing.store.backup import backup_index
from spanqa.indexing.store.check import index_health


def run_backup(args: argparse.Namespace) -> int:
    report = backup_index(args.index, args.destination)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    shards = f" ({report.indexes} shards)" if report.indexes > 1 else ""
    print(f"backed up to {report.destination}{shards}: {report.chunks} chunks, {report.segments} segment file(s), "
          f"{report.bytes / 2**20:.1f} MiB")
    return 0


def run_check(args: argparse.Namespace) -> int:
    healths = index_health(args.index, repair=args.repair, thorough=not args.quick)
    sound = all(health.sound for health in healths)
    if args.json:
        print(json.dumps({"sound": sound, "indexes": [health.to_json() for health in healths]}, indent=2))
        return 0 if sound else 1
    for health in healths:
        for line in health.repaired:
            print(f"repaired: {line}")
        state = "sound" if health.sound else f"{len(health.findings)} problem(s)"
        print(f"{health.index_dir}: {state} ({health.chunks} chunks, {health.files} files, {health.segments} segments)")
        for finding in health.findings:
            print(f"  - {finding.problem}" + ("" if finding.repairable else " (cannot be repaired here)"))
        if health.leftovers and not args.repair:
            print(f"  ({len(health.leftovers)} file(s) no commit names: the next write, or --repair, removes them)")
    if not sound:
        repairable = all(f.repairable for health in healths for f in health.findings)
        if args.repair or not repairable:
            print("spanqa: the index could not be brought back: restore a backup, or index the files again into "
                  "a new folder", file=sys.stderr)
        else:
            print(f"spanqa: run `spanqa check --index {args.index} --repair` to bring it back to its last consistent "
                  "state", file=sys.stderr)
    return 0 if sound else 1
