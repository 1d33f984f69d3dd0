"""Progress in a log: a line every 10% with rate and ETA, no carriage returns; a bar only on a terminal."""

from ddpm.progress import Counted, progress, tracked


def test_a_log_gets_a_line_every_ten_percent_with_rate_and_eta(capsys):
    with progress("inception train", 1000, "img") as bar:
        for _ in range(100):
            bar.update(10)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().split("\n")
    assert len(lines) == 10  # 10%, …, 90%, done
    assert lines[0].startswith("inception train: 10% (100/1000 img) ") and "img/s" in lines[0] and "ETA" in lines[0]
    assert lines[-1].startswith("inception train: done (1000/1000 img) ") and "ETA" not in lines[-1]


def test_tracked_counts_images_of_counted_batches_and_a_resumed_bar_starts_where_it_was(capsys):
    batches = Counted(([0] * 25 for _ in range(4)), 100)
    assert sum(len(b) for b in tracked(batches, "nll", batches.images, "img", size=len)) == 100
    assert capsys.readouterr().err.count("\n") == 4  # 25%, 50%, 75%, done
    with progress("train", 400, "step", initial=300) as bar:
        bar.update(100)
    lines = capsys.readouterr().err.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("train: done (400/400 step) ")


def test_disabled_progress_prints_nothing(capsys):
    with progress("sample", 10, "img", enabled=False) as bar:
        bar.update(10)
    list(tracked(range(3), "x", 3, "img", enabled=False))
    assert capsys.readouterr().err == ""
