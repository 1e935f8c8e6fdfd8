"""A numeric :class:`engine.artifacts.Table` held as numpy columns (a 1280-row channel table
built without a Python row per channel, and stored as the one array it already is).

It is a ``table`` artifact like any other — same JSON, same ``.npy``, same stored form —
built with :meth:`ColumnTable.of`; a stored one comes back as a plain Table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.artifacts import Table


@dataclass
class ColumnTable(Table):
    values: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    ints: list[bool] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, columns: dict[str, NDArray[Any]]) -> ColumnTable:
        """Columns of equal length; integer columns stay integers in the JSON."""
        arrays = [np.asarray(v) for v in columns.values()]
        ints = [bool(np.issubdtype(a.dtype, np.integer)) for a in arrays]
        values = np.column_stack([a.astype(np.float64, copy=False) for a in arrays])
        return cls(name, list(columns), [], values, ints)

    @property
    def shape(self) -> list[int]:
        return [int(self.values.shape[0]), len(self.columns)]

    def row_lists(self) -> list[list[Any]]:
        rows: list[list[Any]] = self.values.tolist()
        idx = [j for j, is_int in enumerate(self.ints) if is_int]
        for row in rows:
            for j in idx:
                row[j] = int(row[j])
        return rows

    def data(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.row_lists()}

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"rows": self.values}

    def stored_meta(self) -> dict[str, Any]:
        return {"columns": self.columns, "ints": list(self.ints)}
