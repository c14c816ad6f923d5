"""Parquet hand-off between steps (validated audits, roster), under the Dagster home.

Published tables live in the warehouse; this store only carries a step's DataFrame to the next
step of the same or a later run. One file per asset and partition, rewritten atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pandas as pd

from qa_pipeline.settings import resolve_path


class ParquetHandoff(dg.ConfigurableIOManager):
    base_dir: str

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        key = context.asset_key.to_user_string().replace("/", "__")
        part = context.asset_partition_key if context.has_asset_partitions else "all"
        return resolve_path(self.base_dir) / key / f"{part}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        obj.to_parquet(tmp, index=False)
        os.replace(tmp, path)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: materialize {context.asset_key.to_user_string()} "
                f"for {context.asset_partition_key if context.has_asset_partitions else 'all'} first"
            )
        return pd.read_parquet(path)
