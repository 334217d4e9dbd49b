"""``make bench``: the hub's performance against its physical limits, on the local stack.

Starts the local stack (moto's server and the provider sandbox on 127.0.0.1) in its own process,
runs the functions as Lambda would (in-process for warm batches, a fresh Python process per cold
start), and prints one table per benchmark with the limit beside the measurement; a full run writes
the tables to bench/results.md. All traffic stays on loopback; every run is bounded in count and time.

    python bench/run.py [--only batch|cold|warm|backlog] [--quick] [--strict]   (or python -m bench)

The package, one module per concern:

- ``main``: the command line; runs the benchmarks in ``BENCHMARKS`` and writes the report.
- ``batch``, ``cold_start``, ``warm``, ``backlog``: one benchmark each, ``run(stack, report, quick)``.
- ``stack``: the local stack in its own process, the sandbox's admin routes.
- ``functions``: functions loaded in this process as fresh containers; counting AWS calls.
- ``events``: SQS events and people with fresh ids.
- ``providers``: what the bench needs to know of each provider, derived from the registry
  (``provisioning.providers``) and template.yaml.
- ``report``: the tables, the acceptance criteria and bench/results.md.
- ``children/``: the programs each cold start runs in a fresh Python process.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.md"
CHILDREN = ROOT / "bench" / "children"
