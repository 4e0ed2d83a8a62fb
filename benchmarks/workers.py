"""How a machine's cores serve a class's maps best: one process with all of them as torch threads, or several
processes with fewer threads each (what `app.py --ray --replicas N` gives on one machine).

Each layout PxT is P worker processes of T torch threads, each with the full-size architecture (random weights);
together they run `--passes` whole passes (explorer.analysis.whole_pass: the forward recording every attention,
then the backward: what a photo's maps cost), split evenly, all starting at once. Printed: seconds of wall time
per pass, median over `--rounds` rounds that take the layouts in turn (so that drift in the machine's speed hits
all alike), idle and beside a process that keeps `--busy` of one core busy in short bursts (as a server's event
loop, uploads and responses do under a class's load), and each layout's time against the first one's.

    python benchmarks/workers.py [--layouts 1x2,2x1] [--passes 6] [--rounds 3] [--busy 0.25]

OpenMP's wait policy is set to PASSIVE unless the environment says otherwise, as the app's other benchmarks do.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch's OpenMP runtime starts

import torch  # noqa: E402

from explorer.analysis import whole_pass  # noqa: E402
from vithybrid import ViTHybridConfig, ViTHybridForImageClassification  # noqa: E402

BURST_S = 0.005  # the busy process's bursts of work, then as long asleep as keeps it at its share of one core


def worker(threads: int, orders, done) -> None:
    """Build the model, warm it up, then for each order n run n whole passes and put their seconds on `done`."""
    torch.set_num_threads(threads)  # this benchmark's own process
    torch.manual_seed(0)
    model = ViTHybridForImageClassification(ViTHybridConfig(image_size=384, num_labels=1000)).eval()
    model.requires_grad_(False)  # as the app loads it: gradients reach the attention maps, not the weights
    pixels = torch.randn(1, 3, 384, 384)
    whole_pass(model, pixels)  # first-time set-up of kernels and allocator
    done.put(0.0)
    while (passes := orders.get()) is not None:
        start = time.perf_counter()
        for _ in range(passes):
            whole_pass(model, pixels)
        done.put(time.perf_counter() - start)


def busy(share: float, stop) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < BURST_S:
            pass
        time.sleep(BURST_S * (1 - share) / share)


class Layout:
    """P worker processes of T threads each, kept for the whole run."""

    def __init__(self, spec: str, context):
        self.spec = spec
        self.processes, self.threads = (int(n) for n in spec.split("x"))
        self.orders, self.done = context.Queue(), context.Queue()
        self.workers = [context.Process(target=worker, args=(self.threads, self.orders, self.done), daemon=True)
                        for _ in range(self.processes)]
        for process in self.workers:
            process.start()

    def ready(self) -> None:
        for _ in self.workers:
            self.done.get()

    def seconds_per_pass(self, passes: int) -> float:
        """Wall time from the start of `passes` passes, split among the workers, to the last one's end, per pass."""
        share, extra = divmod(passes, self.processes)
        start = time.perf_counter()
        for index in range(self.processes):
            self.orders.put(share + (index < extra))
        for _ in self.workers:
            self.done.get()
        return (time.perf_counter() - start) / passes

    def close(self) -> None:
        for _ in self.workers:
            self.orders.put(None)
        for process in self.workers:
            process.join(60)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cores = os.cpu_count() or 1
    parser.add_argument("--layouts", default=f"1x{cores},{cores}x1",
                        help="comma-separated PxT: P processes of T torch threads (default: this machine's cores "
                             "as threads of one process, then as one-thread processes)")
    parser.add_argument("--passes", type=int, default=6, help="whole passes per measurement, split among workers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", type=float, default=0.25, help="the busy process's share of one core (0: none)")
    args = parser.parse_args(argv)
    if not 0 <= args.busy < 1:
        parser.error("--busy must be at least 0 and below 1")
    context = multiprocessing.get_context("spawn")
    layouts = [Layout(spec, context) for spec in args.layouts.split(",")]
    for layout in layouts:
        layout.ready()
    conditions = ["idle"] + ([f"beside a process busy {args.busy:.0%} of a core"] if args.busy else [])
    seconds = {(condition, layout.spec): [] for condition in conditions for layout in layouts}
    try:
        for round_ in range(args.rounds):
            for condition in conditions:
                stop = context.Event()
                load = context.Process(target=busy, args=(args.busy, stop), daemon=True)
                if condition != "idle":
                    load.start()
                for layout in layouts:
                    seconds[condition, layout.spec].append(layout.seconds_per_pass(args.passes))
                    print(f"[round {round_ + 1}/{args.rounds}, {condition}] {layout.spec}: "
                          f"{seconds[condition, layout.spec][-1]:.2f} s a pass", flush=True)
                stop.set()
                if load.is_alive():
                    load.join()
    finally:
        for layout in layouts:
            layout.close()
    print(f"\n{cores} CPUs, torch {torch.__version__}; seconds of wall time per whole pass (forward recording every "
          f"attention + backward), full-size model, {args.passes} passes per measurement, median of {args.rounds}\n")
    print("| condition | " + " | ".join(layout.spec for layout in layouts) + " |")
    print("|---|" + "---:|" * len(layouts))
    for condition in conditions:
        medians = [statistics.median(seconds[condition, layout.spec]) for layout in layouts]
        cells = [f"{m:.2f} s ({m / medians[0]:.2f}x)" for m in medians]
        print(f"| {condition} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
