"""``report.html``: one self-contained page (figures embedded as PNG data URIs, no scripts, no
network) that a facility manager reads in a browser and attaches to a paper or a service ticket.

Sections, most important first: the verdict, the failures and warnings (every metric judged fail or
warn, with its value and limit), the verdict per result, each result's figures and tables (drawn by
the analysis that wrote it: ``Analysis.figures`` and ``Analysis.section``, see
``harness.analysis.contract``; a figure that cannot be drawn is said, never fatal), then the long
table of every metric with its unit, limit and verdict, the run and its provenance (station,
devices, software), and the analysis conventions. Everything is read from the run folder.
``write_report`` raises what writing the file raises (the caller records it in results.json).

Endings are told apart at the top: a red banner when the safe state was NOT confirmed (a laser may
still be on), a "run failed"/"aborted"/"interrupted" badge (not a QC verdict: the measurement could
not be completed, its partial metrics are not judged), an "analysis failed" badge with the reasons,
and otherwise the QC verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.analysis.contract import Analysis
from harness.common.atomic_files import replace_text
from harness.records.endings import ANALYSIS_FAILED, UNSAFE, of_folder
from harness.records.run_folder import RunFolder
from harness.report.html_parts import COLOURS, badge, e, limit_text, num

__all__ = ["COLOURS", "render", "write_report"]

# endings that are not QC verdicts: their own colours, never the verdict's red
ENDING_COLOURS = {"failed": "#6a1b9a", "aborted": "#6a1b9a", "interrupted": "#6a1b9a", "analysis failed": "#8d6e00", "unsafe": "#b3261e"}
ENDING_LABELS = {"failed": "run failed", "aborted": "run aborted", "interrupted": "run interrupted", "analysis failed": "analysis failed",
                 "unsafe": "unsafe: safe state not confirmed"}

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#202124;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;color:#fff;border-radius:4px;padding:.05em .5em;font-weight:600}
.big{font-size:1.3em;padding:.2em .8em}
.unsafe{background:#b3261e;color:#fff;padding:.8em 1em;border-radius:6px;font-size:1.1em;margin:1em 0}
.ending{border-left:6px solid #6a1b9a;padding:.4em .8em;background:#f6f0fa} figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#5f6368} .muted{color:#5f6368;font-size:.85em} pre{white-space:pre-wrap;font-size:.8em;background:#f8f8f8;padding:.6em}
@media print{figure{break-inside:avoid}}
"""


METRIC_HEADER = "<tr><th>subject</th><th>analysis</th><th>metric</th><th>value</th><th>unit</th><th>limit</th><th>verdict</th></tr>"


def _metric_row(r: dict[str, Any], name: str, m: dict[str, Any]) -> str:
    reason = m.get("reason") or ""
    why = f"<br><span class=muted>{e(reason)}</span>" if reason and not reason.startswith("partial data") else ""
    return (f"<tr><td>{e(r['subject'])}</td><td>{e(r['kind'])}</td><td>{e(name)}</td><td class='num'>{num(m['value'])}{why}</td>"
            f"<td>{e(m['unit'])}</td><td>{limit_text(m['limit'])}</td>"
            f"<td>{badge(m['verdict']) if m['limit'] else '<span class=muted>not judged</span>'}</td></tr>")


def _verdict_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        judged = [(k, v) for k, v in r["metrics"].items() if v["limit"]]
        others = [(k, v) for k, v in r["metrics"].items() if not v["limit"]]
        rows += [_metric_row(r, name, m) for name, m in judged + others]
    return "<table id=metrics>" + METRIC_HEADER + "".join(rows) + "</table>"


def _failures(results: list[dict[str, Any]]) -> str:
    """What needs attention first: every metric judged fail or warn, with its value and limit, and any
    result raised to warn or fail for another reason (its data quality), with that reason."""
    rows = [_metric_row(r, name, m) for verdict in ("fail", "warn") for r in results
            for name, m in r["metrics"].items() if m["limit"] and m["verdict"] == verdict]
    flagged = {id(r) for verdict in ("fail", "warn") for r in results for m in r["metrics"].values() if m["limit"] and m["verdict"] == verdict}
    other = "".join(f"<p>{e(r.get('subject', ''))}: {e(r['verdict'])}: {e(r.get('note', ''))}</p>" for r in results
                    if r.get("verdict") in ("warn", "fail") and id(r) not in flagged and r.get("note"))
    if not rows:
        limited = [m for r in results for m in r["metrics"].values() if m["limit"]]
        judged = [m for m in limited if m["verdict"] != "not judged"]
        if judged:
            unjudged = [m for m in limited if m["verdict"] == "not judged"]
            text = "Every judged metric passes." + (f" {len(unjudged)} of the {len(limited)} with acceptance limits are not judged "
                                                   "(each says why in the table below)." if unjudged else "")
        elif limited:
            text = f"No metric was judged: the {len(limited)} with acceptance limits are not judged (each says why in the table below)."
        else:
            text = "No metric was judged (the protocol sets no acceptance limits, or the run did not complete)."
        return "<h2>Failures</h2><p>" + text + "</p>" + other
    return "<h2>Failures and warnings</h2><table id=failures>" + METRIC_HEADER + "".join(rows) + "</table>" + other


def _clock(clock: Any) -> str:
    """How the station's time ran: the dates and times above are station time."""
    if not isinstance(clock, dict):
        return ""
    elapsed = clock.get("elapsed_s")
    span = f"; {elapsed / 60:.1f} min of station time" if isinstance(elapsed, (int, float)) else ""
    if clock.get("mode") == "virtual":
        return "virtual time (simulated station: dates and times are station time)" + span
    scale = clock.get("time_scale")
    return ("real time" if scale in (None, 1, 1.0) else f"real time x{scale:g} (simulated station)") + span


def _git(git: Any) -> str:
    if isinstance(git, dict) and git.get("commit"):
        return f"git {git['commit'][:12]}{' (uncommitted changes)' if git.get('dirty') else ''}"
    return ""


def _table(rows: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows if v not in (None, "")) + "</table>"


def render(folder: Path, run: dict[str, Any], data: dict[str, Any], analyses: Mapping[str, Analysis]) -> str:
    """The page; ``analyses``: result kind -> the analysis that draws its figures and sections."""
    station, software, protocol = run["station"], run.get("software", {}), run["protocol"]
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>QC report {e(data['protocol'])} {e(data['run_id'][:8])}</title>"
             f"<style>{STYLE}</style></head><body>"]
    word = of_folder(run, data)
    parts.append(f"<h1>{e(protocol.get('title') or data['protocol'])}</h1>")
    if word == UNSAFE:
        failures = (run.get("safe_state") or {}).get("failures") or [run.get("reason")]
        parts.append("<div class=unsafe id=unsafe><b>URGENT: SAFE STATE NOT CONFIRMED.</b> A laser may still be emitting. "
                     "Check the station and switch the lasers off by hand before anyone works at it. "
                     f"Not confirmed: {e('; '.join(str(f) for f in failures))}</div>")
    ending = UNSAFE if word == UNSAFE else run["status"] if run["status"] != "completed" else (
        ANALYSIS_FAILED if data.get("status") == ANALYSIS_FAILED else "")
    if ending:
        top = (f'<span class="verdict big" style="background:{ENDING_COLOURS.get(ending, "#6a1b9a")}">'
                 f'{e(ENDING_LABELS.get(ending, ending).upper())}</span>')
    else:
        top = badge(data["verdict"], big=True)
    parts.append(f"<p>{top} &nbsp; station <b>{e(station['name'])}</b>"
                 f"{' (simulated)' if station.get('simulated') else ''}, run {e(data['run_id'])}</p>")
    if run["status"] == "completed" and data.get("verdict_note"):
        parts.append(f"<p class=muted>{e(data['verdict_note'])}</p>")
    if run["status"] != "completed":
        parts.append(f"<p class=ending><b>The measurement could not be completed ({e(run['status'])})</b>: {e(run.get('reason'))}. "
                     "This is not a QC verdict on the instrument: the partial metrics below are shown but not judged.</p>")
    if data.get("status") == ANALYSIS_FAILED:
        items = "".join(f"<li><b>{e(err.get('source'))}</b>: {e(err.get('error'))}</li>" for err in data.get("analysis_errors", []))
        parts.append(f"<div class=ending style='border-color:{ENDING_COLOURS[ANALYSIS_FAILED]}'><b>The analysis failed</b> "
                     f"(the data are complete and kept; after a fix: <code>microscope-qc analyze {e(folder)}</code>):<ul>{items}</ul></div>")
    if data.get("files_changed_since_run"):
        parts.append(f"<p style='color:{COLOURS['fail']}'><b>Files changed since the run recorded them</b> (checksum differs from run.json): "
                     f"{e(', '.join(data['files_changed_since_run']))}. Results from them are not the run's.</p>")
    parts.append(_failures(data["results"]))
    parts.append("<h2>Verdicts</h2>")
    parts.append("<table><tr><th>subject</th><th>analysis</th><th>source</th><th>verdict</th></tr>" + "".join(
        f"<tr><td>{e(r['subject'])}</td><td>{e(r['kind'])}</td><td>{e(r['series'])}</td>"
        f"<td>{badge(r['verdict'])}{(' ' + e(r['note'])) if r.get('note') else ''}</td></tr>"
        for r in data["results"]) + "</table>")
    if data.get("not_analysed"):
        parts.append(f"<p class=muted>Not analysed: {e(', '.join(data['not_analysed']))}</p>")
    if data["results"]:
        parts.append("<h2>Figures</h2>")
    for r in data["results"]:
        analysis = analyses.get(r["kind"])
        try:
            parts.append(analysis.figures(folder, r) if analysis else "")
        except Exception as exc:  # a figure that cannot be drawn must not cost the report
            parts.append(f"<p class=muted>{e(r['subject'])}: figure not drawn ({e(type(exc).__name__)}: {e(exc)})</p>")
        if analysis:
            parts.extend(analysis.section(r))
    if any(r["metrics"] for r in data["results"]):
        parts.append("<h2>Metrics</h2>" + _verdict_table(data["results"]))
    parts.append("<h2>Run</h2>" + _table([
        ("protocol", f"{protocol['id']} version {protocol.get('version', '')} ({protocol.get('path', '')}, sha256 {protocol.get('sha256', '')[:12]})"),
        ("station file", f"{station.get('path', '')} (sha256 {station.get('sha256', '')[:12]})"),
        ("status", run["status"] + (f": {run['reason']}" if run.get("reason") else "")),
        ("started (UTC)", run.get("started_utc")), ("ended (UTC)", run.get("ended_utc")),
        ("clock", _clock(run.get("clock"))),
        ("missing readings/frames", run.get("missing")),
        ("operator", run.get("operator")), ("host", " ".join(str(v) for v in run.get("host", {}).values())),
        ("software", f"{software.get('tool', '')} {software.get('version', '')} {_git(software.get('git'))}; Python {software.get('python', '')}"),
        ("Micro-Manager", software.get("mmcore")),
        ("analysed (UTC, wall clock)", data.get("analysed_utc")),
    ]))
    devices = run.get("devices", {})
    if devices:
        parts.append("<h2>Devices</h2><table><tr><th>role</th><th>vendor</th><th>model</th><th>serial</th><th>firmware</th></tr>")
        for role, d in devices.items():
            ident = d.get("identity", d) if isinstance(d, dict) else {}
            parts.append(f"<tr><td>{e(role)}</td>" + "".join(f"<td>{e(ident.get(k))}</td>" for k in ("vendor", "model", "serial", "firmware")) + "</tr>")
        parts.append("</table>")
    outputs = [r["correction_image"] for r in data["results"] if r.get("correction_image")]
    if outputs:
        parts.append("<h2>Outputs</h2><p>Flat-field correction images (OME-TIFF, mean 1; corrected = (raw - dark) / correction): "
                     + ", ".join(f"<code>{e(o)}</code>" for o in outputs) + "</p>")
    parts.append(f"<h2>Conventions</h2><pre>{e(data.get('conventions'))}</pre>")
    parts.append(f"<p class=muted>{e(software.get('tool', 'microscope-qc'))} {e(data.get('tool_version'))}; "
                 "files and checksums: MANIFEST.sha256; full record: run.json, journal.jsonl, results.json.</p></body></html>")
    return "\n".join(parts)


def write_report(folder: Path, run: dict[str, Any], data: dict[str, Any], analyses: Mapping[str, Analysis]) -> Path:
    """``report.html`` in the run folder, written atomically; its path."""
    path = RunFolder(folder).report
    replace_text(path, render(folder, run, data, analyses))
    return path
