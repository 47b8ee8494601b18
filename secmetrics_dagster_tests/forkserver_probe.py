"""A step process's first moments, as Dagster's multiprocess executor starts one: imported by the forked child only
to find `probe` (so it imports nothing else here), which reports what opening the run's instance had to import."""

import sys


def probe(instance_dir: str, answers) -> None:
    before = set(sys.modules)
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(instance_dir)):
        pass
    answers.put(sorted(set(sys.modules) - before))
