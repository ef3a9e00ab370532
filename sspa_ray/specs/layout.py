"""How the report lays an ablation preset's table out (`layout:`), and what each layout needs.

Each layout names the columns that describe a row and checks the rows it needs; report/plots.py
keys its figures by the same :class:`Layout`, so no code asks ``layout == "grid"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sspa_ray.outputs import Word

if TYPE_CHECKING:
    from sspa_ray.specs._yaml import SpecFile
    from sspa_ray.specs.ablation import AblationSpec


class Layout(Word):
    MODULES = "modules"   # Table 5: one row per module pattern, each module a ✓ column
    GRID = "grid"         # Table 7: two keys, one row per pair, and a grid of the first metric per block
    RATIO = "ratio"       # Tables 8, 9: one row per aux share
    LIST = "list"         # Tables 3, 4, 6: one row per setting, named by its label where rows have one

    def labelled(self, spec: AblationSpec) -> bool:
        """Whether a 'Method' column names each row by its label instead of its keys."""
        return self is Layout.LIST and any(spec.labels)

    def descriptor_keys(self, spec: AblationSpec) -> list[str]:
        """The keys shown as columns that describe a row (the grid's keys in grid order)."""
        if self is Layout.GRID:
            return list(spec.grid or ())
        if self.labelled(spec):
            return []
        return spec.row_keys()

    def merges(self, spec: AblationSpec, key: str) -> bool:
        """Whether `key`'s column blanks a value repeated from the row above (the grid's row key)."""
        return self is Layout.GRID and spec.grid is not None and key == spec.grid[0]

    @property
    def has_grids(self) -> bool:
        """Whether the table carries a grid of its first metric per block."""
        return self is Layout.GRID

    def check(self, src: SpecFile, rows: list[dict[str, Any]], grid: Any) -> tuple[str, str] | None:
        """The preset's `grid:` as (row key, column key) for layout grid, else None; raises the
        preset's error where its rows do not fit the layout."""
        varied = list(dict.fromkeys(k for row in rows for k in row))
        if self is not Layout.GRID and grid is not None:
            raise src.error("grid", "'grid' only applies to layout: grid; remove it or set layout: grid")
        if self is Layout.GRID:
            if not (isinstance(grid, list) and len(grid) == 2 and all(isinstance(k, str) for k in grid)):
                raise src.error("grid" if grid is not None else "layout",
                                "layout: grid needs 'grid: [ROW_KEY, COLUMN_KEY]', e.g. [pam.beta, pam.alpha]")
            for i, row in enumerate(rows):
                if set(row) != set(grid):
                    raise src.error(f"rows[{i}]", f"rows[{i}] must set exactly the grid keys {grid[0]} and {grid[1]}")
            return grid[0], grid[1]
        if self is Layout.RATIO and any("data.aux_ratio" not in row for row in rows):
            raise src.error("layout", "layout: ratio needs data.aux_ratio in every row")
        if self is Layout.MODULES and not any(k.startswith("modules.") for k in varied):
            raise src.error("layout", "layout: modules needs rows that set modules.* keys")
        return None
