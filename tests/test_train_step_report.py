"""benchmarks/train_step.py's report: the first full-length step (heap growth) apart from the
steady ones, medians over rounds, the markdown table (no model is built here)."""

from benchmarks import train_step


def _run(times, peak=100.0):
    return {"status": "ok", "step_times": list(times), "peak_mib": peak}


def test_steady_steps_drop_the_first_unless_it_is_alone():
    assert train_step.steady_steps([9.0, 5.0, 6.0]) == [5.0, 6.0]
    assert train_step.steady_steps([9.0]) == [9.0]


def test_rounds_give_the_median_steady_step_and_the_median_first_step():
    row = train_step._median_rows([_run([10.0, 4.0, 6.0], peak=50.0), _run([12.0, 5.0, 7.0], peak=70.0),
                                   {"status": "timeout"}])
    assert row["step_s"] == 5.5 and (row["step_s_min"], row["step_s_max"]) == (4.0, 7.0)
    assert row["first_step_s"] == 11.0
    assert row["peak_mib"] == 70.0 and row["rounds"] == 2


def test_one_step_per_run_is_reported_as_before():
    row = train_step._median_rows([_run([10.0]), _run([12.0])])
    assert row["step_s"] == 11.0 and row["first_step_s"] == 11.0
    table = train_step.markdown([{"T": 4096, "model": "sliding", "variant": "", **row, "bound_s": 5.5}])
    header, _, line = table.splitlines()
    assert "first step" not in header and "one training step" in header
    assert line.split("|")[4].strip() == "11.0 (10.0-12.0)" and line.split("|")[-2].strip() == "2.00"


def test_repeated_steps_add_a_first_step_column():
    row = {"T": 16384, "model": "poolingformer", "variant": "", "bound_s": 2.0,
           **train_step._median_rows([_run([9.0, 4.0])])}
    failed = {"T": 16384, "model": "full", "variant": "", "status": "timeout"}
    header, rule, line, bad = train_step.markdown([row, failed]).splitlines()
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert header.count("|") == rule.count("|") == line.count("|") == bad.count("|") == 8
    assert [c.strip() for c in bad.split("|")[4:-1]] == ["timeout", "-", "-", "-"]
    assert "first step (s)" in header and "steady step (s)" in header
    assert cells[3:7] == ["9.0", "4.0", "100", "2.00"]


def test_sub_second_gpu_steps_keep_their_milliseconds():
    row = {"T": 16384, "model": "full", "variant": "", "bound_s": 0.034,
           **train_step._median_rows([_run([0.2435, 0.0761, 0.0722])])}
    cells = [c.strip() for c in train_step.markdown([row]).splitlines()[2].split("|")[1:-1]]
    assert cells[3:5] == ["0.243", "0.074 (0.072-0.076)"]
