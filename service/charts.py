"""Progress charts: matplotlib on the Agg canvas (no display, no pyplot global state, safe in a
web worker), as PNG or SVG bytes.

One panel per score family (overall, pigmentation, texture, wrinkles): the whole-face score as a
thick line, each region's score as a thin line (left solid, right dashed, one colour per
region pair), and around the whole-face baseline a grey band of the measurement noise (the
MDC95 of :mod:`pipelines.calibration`). A filled marker is a visit that differs really from the
baseline; a hollow one is within the noise. Lower is better (severity 0-100).
"""
from __future__ import annotations

import io
from pathlib import Path

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pipelines.errors import InvalidInput
from pipelines.progress import FACE, Progress, Series

FORMATS = ("png", "svg")
PANELS = ("overall", "pigmentation", "texture", "wrinkles")
PANEL_TITLES = {"overall": "Overall severity", "pigmentation": "Pigmentation", "texture": "Texture",
                "wrinkles": "Wrinkles"}
# One colour per region pair (tab10), left solid, right dashed.
_PAIR_COLOURS = {"forehead": "#1f77b4", "glabella": "#ff7f0e", "crows_feet": "#2ca02c", "under_eye": "#d62728",
                 "cheek": "#9467bd", "nasolabial": "#8c564b", "chin": "#e377c2"}


def _region_style(region: str) -> tuple[str, str, str]:
    """(colour, linestyle, legend label) of a region's line."""
    base, side = region, ""
    for suffix in ("_left", "_right"):
        if region.endswith(suffix):
            base, side = region[: -len(suffix)], suffix[1:]
    colour = _PAIR_COLOURS.get(base, "#7f7f7f")
    label = base.replace("_", " ") + (f" ({side[0].upper()})" if side else "")
    return colour, "--" if side == "right" else "-", label


def _points(series: Series) -> tuple[list, list]:
    idx = series.measured
    return [series.dates[i] for i in idx], [series.values[i] for i in idx]


def _plot_face(ax, series: Series) -> None:
    dates, values = _points(series)
    if series.mdc is not None and series.baseline is not None:
        lo, hi = series.baseline - series.mdc, series.baseline + series.mdc
        ax.axhspan(max(0.0, lo), min(100.0, hi), color="#000000", alpha=0.08, lw=0, zorder=0)
        ax.axhline(series.baseline, color="#000000", alpha=0.25, lw=0.8, ls=":", zorder=0)
    ax.plot(dates, values, color="#111111", lw=2.4, zorder=3)
    for i in series.measured:
        change = series.from_baseline[i]
        real = bool(change is not None and change.real)
        ax.plot([series.dates[i]], [series.values[i]], marker="o", ms=7, zorder=4, color="#111111",
                markerfacecolor="#111111" if real else "white", markeredgewidth=1.6)


def _plot_region(ax, series: Series) -> None:
    dates, values = _points(series)
    colour, style, _ = _region_style(series.region)
    ax.plot(dates, values, color=colour, ls=style, lw=1.1, alpha=0.85, zorder=2)
    for i in series.measured:
        change = series.from_baseline[i]
        if change is not None and change.real:
            ax.plot([series.dates[i]], [series.values[i]], marker="o", ms=4, color=colour, zorder=2.5)


def render_progress_chart(progress: Progress, fmt: str = "png", *, title: str | None = None,
                          dpi: int = 110) -> bytes:
    """The chart of ``progress`` as PNG or SVG bytes (deterministic for equal input)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"chart format must be png or svg, not {fmt!r}", field="format")
    fig = Figure(figsize=(11.0, 7.2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex=True, sharey=True).ravel()
    dates = [v.date for v in progress.visits]
    regions_drawn: dict[str, tuple[str, str, str]] = {}
    any_data = False
    for ax, family in zip(axes, PANELS):
        ax.set_title(PANEL_TITLES[family], loc="left", fontsize=11)
        ax.grid(True, color="#dddddd", lw=0.6)
        ax.set_ylim(0, 100)
        for s in progress.series.values():
            if s.kind == "region_score" and s.family == family and s.measured:
                _plot_region(ax, s)
                regions_drawn.setdefault(s.region, _region_style(s.region))
                any_data = True
        face = progress.series.get(f"scores.{family}")
        if face is not None and face.measured:
            _plot_face(ax, face)
            any_data = True
        elif not any(s.family == family and s.kind == "region_score" for s in progress.series.values()):
            ax.text(0.5, 0.5, "not scored", transform=ax.transAxes, ha="center", va="center", color="#888888")
        for d in dates:
            ax.axvline(d, color="#bbbbbb", lw=0.5, zorder=0)
    for ax in axes[::2]:
        ax.set_ylabel("severity (0 none - 100 most severe)", fontsize=8.5)
    if dates:
        if len(set(dates)) <= 10:       # few visits: a tick on each
            from matplotlib.dates import DateFormatter

            ticks = sorted(set(dates))
            fmt_ = "%d %b\n%Y" if ticks[0].year != ticks[-1].year else "%d %b"
            for ax in axes:
                ax.set_xticks(ticks)
                ax.xaxis.set_major_formatter(DateFormatter(fmt_))
                ax.tick_params(axis="x", labelsize=8, labelrotation=0)
        else:
            locator = AutoDateLocator(minticks=3, maxticks=10)
            for ax in axes:
                ax.xaxis.set_major_locator(locator)
                ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        if len(set(dates)) == 1:
            import datetime as dt

            d0 = dates[0]
            for ax in axes:
                ax.set_xlim(d0 - dt.timedelta(days=7), d0 + dt.timedelta(days=7))
    handles = [Line2D([], [], color="#111111", lw=2.4, marker="o", markerfacecolor="#111111", label="whole face"),
               Line2D([], [], color="#111111", lw=0, marker="o", markerfacecolor="white",
                      label="within measurement noise of baseline")]
    order = {r: i for i, r in enumerate(_region_order())}
    for region, (colour, style, label) in sorted(regions_drawn.items(), key=lambda kv: order.get(kv[0], 99)):
        handles.append(Line2D([], [], color=colour, ls=style, lw=1.2, label=label))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(7, len(handles)), fontsize=8, frameon=False)
    noise = "provisional " if progress.noise_provisional else ""
    fig.suptitle((title or "Progress") + "  (lower is better)", fontsize=13, x=0.01, ha="left")
    foot = (f"Grey band: {noise}measurement noise (MDC95) around the baseline; filled markers: real change "
            "from baseline.")
    if not any_data:
        foot = "No scores yet: the visits have no analysed photo with scores."
    fig.text(0.99, 0.995, foot, ha="right", va="top", fontsize=7.5, color="#555555")
    buf = io.BytesIO()
    with rc_context({"svg.hashsalt": "mesoscan"}):   # fixed SVG ids: a deterministic file
        if fmt == "svg":
            fig.savefig(buf, format="svg", metadata={"Date": None})
        else:
            fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _region_order() -> tuple[str, ...]:
    from pipelines.regions import REGION_NAMES

    return (FACE, *REGION_NAMES)


def write_progress_chart(progress: Progress, path: str | Path, *, title: str | None = None) -> Path:
    """Write the chart to ``path``; the format comes from its suffix (.png or .svg)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise InvalidInput(f"chart file must end in .png or .svg: {path}", field="chart")
    path.write_bytes(render_progress_chart(progress, fmt, title=title))
    return path
