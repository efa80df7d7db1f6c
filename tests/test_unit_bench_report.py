"""bench/report.py names the Azure CLI release it compared with, as the benchmark found it installed."""
import argparse

from bench import report


def test_the_report_names_the_azure_cli_release_it_compared_with(tmp_path):
    args = argparse.Namespace(repeat=1, bulk_mib=1, rtt_count=1, deadline=1.0, idle=1, scp_mib=1)
    results = {("upload MB/s", "webapp"): [700.0], ("upload MB/s", "reference"): [100.0]}
    table = report.write(str(tmp_path), results, {}, {"azure-cli": "9.99.1"}, args, 60.0)
    assert "| Azure CLI 9.99.1 tunnel |" in table.splitlines()[0]
    results_md = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert "and the Azure CLI 9.99.1 tunnel go through the sandbox SCM server" in results_md
    assert "- azure-cli: 9.99.1" in results_md
