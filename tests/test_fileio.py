"""Files between stages are written whole or not at all: a writer interrupted half-way (an
exception, Ctrl-C) leaves the previous file and no temporary file behind."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from qpuflow.fileio import atomic_file, save_figure


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target) as fh:
            fh.write("half of the new")
            raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


class _Breaks:
    """A table whose CSV writer dies after writing part of its rows."""

    def to_csv(self, fh, index=False):
        fh.write("a,b\n1,2\n")
        raise KeyboardInterrupt


def test_analysis_tables_are_replaced_whole(tmp_path: Path):
    from qpuflow.analysis import TABLES, write_tables

    outputs = {name: tmp_path / f"{name}.csv" for name in TABLES}
    write_tables({name: pd.DataFrame({"x": [1, 2]}) for name in TABLES}, outputs)
    before = {name: path.read_text() for name, path in outputs.items()}
    broken = {name: pd.DataFrame({"x": [3]}) for name in TABLES}
    broken[TABLES[-1]] = _Breaks()
    with pytest.raises(KeyboardInterrupt):
        write_tables(broken, outputs)
    assert outputs[TABLES[-1]].read_text() == before[TABLES[-1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.csv" for name in TABLES)


def test_a_figure_is_a_whole_png(tmp_path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    save_figure(fig, tmp_path / "sub" / "f.png")
    plt.close(fig)
    assert (tmp_path / "sub" / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
