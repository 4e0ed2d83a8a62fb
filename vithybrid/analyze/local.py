"""The local backend: one process runs the model on batches while worker processes decode the files (a torch
DataLoader), and the rows go to OUT in parts, each written whole (vithybrid.atomic: a hidden temporary file, then
renamed), so
that an interrupted run leaves a valid Parquet dataset that `--resume` completes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..atomic import replacing
from .maps import Explainer, decode

PART_ROWS = 256  # rows per Parquet part: what an interruption can lose at most is the batch in flight


class Decoding(Dataset):
    def __init__(self, rows: pd.DataFrame, processor):
        self.rows, self.processor = rows.to_dict("records"), processor

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return decode(self.rows[index], self.processor)


def as_list(items: list[dict]) -> list[dict]:
    return items


def write_part(out: Path, table: pa.Table) -> None:
    with replacing(out / f"part-{uuid.uuid4().hex}.parquet") as file:  # hidden until whole: readers skip ".*"
        pq.write_table(table, file)


def run_local(rows: pd.DataFrame, out: Path, explainer: Explainer, batch_size: int, workers: int) -> None:
    """Explain `rows` into parts in `out`. Ctrl-C stops after writing the rows already explained (the
    KeyboardInterrupt goes on to the caller)."""
    loader = DataLoader(Decoding(rows, explainer.processor), batch_size=batch_size, num_workers=workers,
                        collate_fn=as_list)
    pending = []
    with tqdm(total=len(rows), unit="img", desc="explaining", dynamic_ncols=True) as progress:
        try:
            for batch in loader:
                pending.append(explainer(batch))
                progress.update(len(batch))
                if sum(len(t) for t in pending) >= PART_ROWS:
                    write_part(out, pa.concat_tables(pending))
                    pending = []
        finally:
            if pending:
                write_part(out, pa.concat_tables(pending))
