"""`agent-fleet doctor`: one row per check, JSON with the same data, exit 1 only on a failure."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agent_fleet_mcp.cli import main


def test_doctor_reports_checks_and_missing_runners(tmp_path: Path) -> None:
    env = {"AGENT_FLEET_HOME": str(tmp_path / "home"), "PATH": str(tmp_path), "ANTHROPIC_API_KEY": "", "COLUMNS": "200"}
    runner = CliRunner()
    res = runner.invoke(main, ["doctor"], env=env, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "python" in res.stdout and "fleet home" in res.stdout
    data = json.loads(runner.invoke(main, ["doctor", "--json"], env=env, catch_exceptions=False).stdout)
    by = {c["name"]: c for c in data["checks"]}
    assert by["runner codex"]["level"] == "warn" and "not on PATH" in by["runner codex"]["detail"]
    assert by["runner anthropic"]["level"] == "warn" and by["runner anthropic"]["fix"]


def test_doctor_fails_when_home_is_a_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    res = CliRunner().invoke(main, ["doctor"], env={"AGENT_FLEET_HOME": str(home), "COLUMNS": "200"})
    assert res.exit_code == 1
    assert "not a directory" in res.stdout


def test_doctor_names_the_containment_and_why_not_stronger(tmp_path: Path) -> None:
    from agent_fleet_mcp.runners import containment

    env = {"AGENT_FLEET_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    runner = CliRunner()
    data = json.loads(runner.invoke(main, ["doctor", "--json"], env=env, catch_exceptions=False).stdout)
    row = {c["name"]: c for c in data["checks"]}["containment"]
    assert row["detail"].startswith(containment.detect().label)
    forced_cgroup = {**env, containment.MODE_ENV: "cgroup"}
    data = json.loads(runner.invoke(main, ["doctor", "--json"], env=forced_cgroup, catch_exceptions=False).stdout)
    row = {c["name"]: c for c in data["checks"]}["containment"]
    if containment.detect().cgroup_base is not None:
        assert row["level"] == "warn" and row["detail"].startswith("cgroup: a cgroup v2 per turn"), row
        assert "pidns: AGENT_FLEET_CONTAINMENT=cgroup forces the cgroup only" in row["detail"]
    forced = {**env, containment.MODE_ENV: "pgroup"}
    data = json.loads(runner.invoke(main, ["doctor", "--json"], env=forced, catch_exceptions=False).stdout)
    row = {c["name"]: c for c in data["checks"]}["containment"]
    assert row["level"] == "warn" and row["detail"].startswith("pgroup") and "forces" in row["detail"]
    assert f"unset {containment.MODE_ENV}" in row["fix"]


def test_containment_without_unshare_falls_back_and_says_why(tmp_path: Path) -> None:
    from agent_fleet_mcp.runners import containment

    got = containment.detect_on(str(tmp_path))  # an empty PATH: no unshare
    assert got.mode == ("cgroup" if got.cgroup_base is not None else "pgroup") and got.unshare is None
    assert got.why_not[0] == "pidns: util-linux `unshare` is not on PATH"


def test_doctor_fails_on_a_trust_list_a_crash_left_half_rewritten(tmp_path: Path) -> None:
    """The trust list is rewritten in place (the home's guards are mounts on the file itself): a crash half-way
    leaves new bytes over old ones, which trust nothing. doctor says so and how to fix it; trusting again does."""
    from agent_fleet_mcp.trust import revoke_files, trust_file, trust_files

    home, agents = tmp_path / "home", tmp_path / "agents"
    agents.mkdir()
    files = [agents / f"a{i}.md" for i in range(3)]
    for f in files:
        f.write_text(f"---\nname: {f.stem}\ndescription: d\n---\nbody\n")
    env = {"AGENT_FLEET_HOME": str(home), "COLUMNS": "300", "NO_COLOR": "1"}
    runner = CliRunner()

    def trust_row() -> tuple[int, dict[str, str]]:
        res = runner.invoke(main, ["doctor", "--json"], env=env, catch_exceptions=False)
        return res.exit_code, {c["name"]: c for c in json.loads(res.stdout)["checks"]}["trust list"]

    code, row = trust_row()
    assert row["level"] == "ok" and "not created yet" in row["detail"]
    trust_files(home, files)
    code, row = trust_row()
    assert row["level"] == "ok" and "3 catalog files trusted" in row["detail"]
    old = trust_file(home).read_bytes()
    revoke_files(home, files[1:])  # a shorter list, written over the old one; the crash comes before the old tail
    new = trust_file(home).read_bytes()  # is blanked and cut
    trust_file(home).write_bytes(new + old[len(new) :])
    code, row = trust_row()
    assert code == 1 and row["level"] == "fail" and "no catalog file is trusted" in row["detail"], row
    assert "agent-fleet trust FILE" in row["fix"]
    res = runner.invoke(main, ["trust", *map(str, files)], env=env, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    code, row = trust_row()
    assert row["level"] == "ok" and "3 catalog files trusted" in row["detail"]
