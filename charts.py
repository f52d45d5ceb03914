"""Plotly figures for the Lessons and Class board pages: a lesson's chart from its run's result, and the board's
KD gain against one setting. Drawing only: every number comes from kdcore's results, reveals and board."""

from __future__ import annotations

import math

import plotly.graph_objects as go

import ui
from kdcore import classboard, lessons, studies
from kdcore.experiments import RunResult

CHART_HEIGHT = 430
UP, DOWN = "#009E73", "#D55E00"  # Okabe-Ito green and vermillion: better / worse than scratch, as on Distill
# The title of each chart a lesson can name (lessons.CHARTS), so a page and its tests agree on what is drawn.
TITLES = {
    "soft-targets": "The teacher's probabilities for this image",
    "gain-vs-temperature": "KD gain at each temperature T",
    "gain-vs-alpha": "KD gain at each weight α",
    "sweep-heatmap": "KD gain for each T and α",
    "gain-vs-student": "KD gain for each student size",
    "gain-vs-fraction": "KD gain at each share of the training data",
    "missing-class": "The class the students never saw",
    "students": "Test accuracy of the two students",
    "learning-curves": "Test accuracy while the students trained",
}
BOARD_TITLES = {
    axis: f"KD gain against {label[0].lower()}{label[1:]}" for axis, label in classboard.AXIS_LABELS.items()
}
MISSING_ROWS = {
    "teacher": ("Teacher (saw it)", ui.COLORS["ensemble"], ""),
    "scratch": ("Scratch student", ui.COLORS["scratch"], ""),
    "distilled": ("Distilled student", ui.COLORS["distilled"], ""),
    "distilled + bias fix": ("Distilled + bias fix", ui.COLORS["distilled"], "/"),
}


def _titled(fig: go.Figure, title: str, subtitle: str = "", height: int = CHART_HEIGHT) -> go.Figure:
    ui.readable(fig, height)
    fig.update_layout(
        title=dict(text=title, subtitle=dict(text=subtitle, font=dict(size=15, color="#555"))), margin=dict(t=90)
    )
    return fig


def _bottom_legend(fig: go.Figure) -> None:
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0))


def _gain_subtitle(scratch_acc: float | None = None) -> str:
    scratch = "scratch" if scratch_acc is None else f"scratch ({100 * scratch_acc:.1f} %)"
    return f"distilled − {scratch} test accuracy · above 0: the teacher helped"


def _pct(values) -> list[float | None]:
    return [None if v is None else 100 * v for v in values]


def _gain_axis(fig: go.Figure, points: list[float]) -> None:
    """A gain axis with 0 (the scratch student) always in view and marked, symmetric so up and down read alike."""
    span = max([abs(v) for v in points] + [1.0]) * 1.35
    fig.update_yaxes(
        title_text="KD gain (points)", range=[-span, span], zeroline=True, zerolinewidth=2, zerolinecolor="#444"
    )


def _gain_trace(fig: go.Figure, x: list[str], gains: list[float | None], name: str, hover: str, custom=None) -> None:
    y = _pct(gains)
    fig.add_scatter(
        x=x,
        y=y,
        name=name,
        mode="lines+markers+text",
        line=dict(color="#888", width=2),
        marker=dict(size=15, color=[UP if v is not None and v >= 0 else DOWN for v in y]),
        text=["" if v is None else f"{v:+.1f}" for v in y],
        textposition="top center",
        textfont=dict(size=16, color="#333"),
        cliponaxis=False,
        customdata=custom,
        hovertemplate=hover,
    )


# --------------------------------------------------------------------------- lesson charts


def soft_targets(r: lessons.LookResult) -> go.Figure:
    t = r.config.temperature
    fig = go.Figure()
    for temperature, colour in ((1.0, ui.COLORS["teacher"]), (t, ui.COLORS["ensemble"])):
        y = _pct(r.probabilities(temperature))
        fig.add_bar(
            x=list(r.classes),
            y=y,
            name=f"T = {temperature:g}",
            marker_color=colour,
            text=[f"{v:.0f}" if v >= 0.5 else "" for v in y],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="class %{x}: %{y:.2f} %<extra>" + f"T = {temperature:g}</extra>",
        )
    _titled(fig, TITLES["soft-targets"], f"true class {r.classes[r.label]} · T = 1 against T = {t:g}")
    _bottom_legend(fig)
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="Class", type="category")
    fig.update_yaxes(title_text="Probability (%)", range=[0, 110])
    return fig


def sweep_gain(r: studies.SweepResult, axis: str) -> go.Figure:
    """KD gain against T (axis "temperature") or α, one line per value of the other setting."""
    symbol, other_symbol = ("T", "α") if axis == "temperature" else ("α", "T")
    values, others = (r.temperatures, r.alphas) if axis == "temperature" else (r.alphas, r.temperatures)
    gain = r.gain
    fig, shown = go.Figure(), []
    for k, other in enumerate(others):
        line = [row[k] for row in gain] if axis == "temperature" else gain[k]
        shown += [100 * g for g in line if g is not None]
        _gain_trace(
            fig,
            [f"{symbol} = {v:g}" for v in values],
            line,
            f"{other_symbol} = {other:g}",
            "%{x}: %{y:+.2f} points<extra>" + f"{other_symbol} = {other:g}</extra>",
        )
    _titled(fig, TITLES[f"gain-vs-{axis}"], _gain_subtitle(r.scratch_acc))
    fig.update_layout(showlegend=len(others) > 1)
    _bottom_legend(fig)
    fig.update_xaxes(title_text="temperature T" if axis == "temperature" else "weight α of the teacher")
    _gain_axis(fig, shown)
    return fig


def sweep_heatmap(r: studies.SweepResult) -> go.Figure:
    z = [_pct(row) for row in r.gain]
    span = max([abs(v) for row in z for v in row if v is not None] + [0.5])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"{a:g}" for a in r.alphas],
            y=[f"{t:g}" for t in r.temperatures],
            text=[["" if v is None else f"{v:+.1f}" for v in row] for row in z],
            texttemplate="%{text}",
            textfont=dict(size=17),
            colorscale=[[0, DOWN], [0.5, "#F4F4F4"], [1, UP]],
            zmin=-span,
            zmax=span,
            xgap=4,
            ygap=4,
            colorbar=dict(title=dict(text="KD gain (points)", side="right")),
            hovertemplate="T = %{y}, α = %{x}: %{z:+.2f} points<extra></extra>",
        )
    )
    _titled(fig, TITLES["sweep-heatmap"], _gain_subtitle(), height=max(CHART_HEIGHT, 170 + 75 * len(r.temperatures)))
    fig.update_xaxes(title_text="α (weight of the teacher)", type="category", showgrid=False)
    fig.update_yaxes(title_text="temperature T", type="category", autorange="reversed", showgrid=False)
    return fig


def _points_chart(chart: str, labels: list[str], points, hover: str) -> go.Figure:
    fig = go.Figure()
    custom = [[_acc(p.scratch_acc), _acc(p.distilled_acc)] for p in points]
    _gain_trace(fig, labels, [p.gain for p in points], "KD gain", hover, custom)
    _titled(fig, TITLES[chart], _gain_subtitle())
    fig.update_layout(showlegend=False)
    fig.update_xaxes(type="category")
    _gain_axis(fig, [100 * p.gain for p in points if p.gain is not None])
    return fig


def _acc(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def gain_vs_student(r: studies.CapacityResult) -> go.Figure:
    labels = [f"{p.student}<br>{p.params:,} parameters" for p in r.points]
    hover = "%{x}: %{y:+.2f} points<br>scratch %{customdata[0]}, distilled %{customdata[1]}<extra></extra>"
    fig = _points_chart("gain-vs-student", labels, r.points, hover)
    fig.update_xaxes(title_text="Student (smallest first)")
    return fig


def gain_vs_fraction(r: studies.FractionResult) -> go.Figure:
    labels = [f"{p.fraction * 100:g} %<br>{p.train_size:,} images" for p in r.points]
    hover = "%{x}: %{y:+.2f} points<br>scratch %{customdata[0]}, distilled %{customdata[1]}<extra></extra>"
    fig = _points_chart("gain-vs-fraction", labels, r.points, hover)
    fig.update_xaxes(title_text="Share of the training images")
    return fig


def missing_class(r: studies.MissingClassResult) -> go.Figure:
    fig = go.Figure()
    for row in r.rows:
        label, colour, pattern = MISSING_ROWS[row.name]
        y = None if row.missing_acc is None else 100 * row.missing_acc
        fig.add_bar(
            x=[label],
            y=[y],
            name=label,
            marker=dict(color=colour, line=dict(color="#333", width=1), pattern=dict(shape=pattern, fgcolor="#333")),
            text=["" if y is None else f"{y:.1f} %"],
            textposition="outside",
            textfont=dict(size=17, color="#333"),
            cliponaxis=False,
            hovertemplate="%{x}: %{y:.2f} % of the test " + r.class_name + "s<extra></extra>",
        )
    _titled(fig, TITLES["missing-class"], f"share of the test images of class {r.class_name} recognised")
    fig.update_layout(showlegend=False)
    fig.update_xaxes(type="category")
    fig.update_yaxes(title_text=f"Class {r.class_name} recognised (%)", range=[0, 110])
    return fig


def students(r: RunResult) -> go.Figure:
    fig = go.Figure()
    for role in ("ensemble", "scratch", "distilled"):
        row = r.row(role)
        if row is not None:
            fig.add_bar(
                x=[ui.ROLE_LABELS[role]],
                y=[100 * row.accuracy],
                marker_color=ui.COLORS[role],
                text=[f"{100 * row.accuracy:.1f} %"],
                textposition="outside",
                cliponaxis=False,
                hovertemplate="%{x}: %{y:.2f} %<extra></extra>",
            )
    gain = r.kd_gain
    _titled(fig, TITLES["students"], "" if gain is None else f"KD gain {100 * gain:+.1f} points")
    fig.update_layout(showlegend=False)
    values = [100 * row.accuracy for row in r.rows]
    low = max(0.0, 5 * math.floor((min(values) - 5) / 5)) if values else 0.0
    fig.update_yaxes(title_text="Test accuracy (%)", range=[low, 102])
    return fig


def learning_curves(r: RunResult) -> go.Figure:
    fig = go.Figure()
    for role in ("scratch", "distilled"):
        epochs = r.curves.get(role, [])
        fig.add_scatter(
            x=[e.epoch for e in epochs],
            y=[100 * e.test_acc for e in epochs],
            name=ui.ROLE_LABELS[role],
            mode="lines+markers",
            line=dict(color=ui.COLORS[role], width=4),
            hovertemplate="epoch %{x}: %{y:.2f} %<extra>" + role + "</extra>",
        )
    _titled(fig, TITLES["learning-curves"], "higher is better")
    _bottom_legend(fig)
    fig.update_xaxes(title_text="Epoch")
    fig.update_yaxes(title_text="Test accuracy (%)")
    return fig


LESSON_CHARTS = {
    "soft-targets": soft_targets,
    "gain-vs-temperature": lambda r: sweep_gain(r, "temperature"),
    "gain-vs-alpha": lambda r: sweep_gain(r, "alpha"),
    "sweep-heatmap": sweep_heatmap,
    "gain-vs-student": gain_vs_student,
    "gain-vs-fraction": gain_vs_fraction,
    "missing-class": missing_class,
    "students": students,
    "learning-curves": learning_curves,
}


def lesson_chart(chart: str, result) -> go.Figure:
    """The chart a lesson names (one of lessons.CHARTS), drawn from its run's result."""
    if chart not in LESSON_CHARTS:
        raise ValueError(f"chart must be one of: {', '.join(LESSON_CHARTS)}; got {chart!r}")
    return LESSON_CHARTS[chart](result)


# --------------------------------------------------------------------------- class board


def _board_x(series: classboard.Series, x) -> float | str:
    return x if series.axis == "student" else float(x)


def board_chart(series: classboard.Series) -> go.Figure:
    """One dot per run (or study cell) at its setting, and the mean per setting as a line, counts in the hover."""
    fig = go.Figure()
    fig.add_scatter(
        x=[_board_x(series, d.x) for d in series.dots],
        y=[100 * d.gain for d in series.dots],
        name="one run",
        mode="markers",
        marker=dict(size=11, color=ui.COLORS["distilled"], opacity=0.55, line=dict(color="#333", width=1)),
        customdata=[[d.kind, d.run_id] for d in series.dots],
        hovertemplate="%{x}: %{y:+.2f} points<br>%{customdata[0]}, run %{customdata[1]}<extra></extra>",
    )
    fig.add_scatter(
        x=[_board_x(series, m.x) for m in series.means],
        y=[100 * m.gain for m in series.means],
        name="mean per setting",
        mode="lines+markers",
        line=dict(color="#333", width=3),
        marker=dict(size=16, symbol="diamond", color="#333"),
        customdata=[m.count for m in series.means],
        hovertemplate="%{x}: mean %{y:+.2f} points over %{customdata} runs<extra></extra>",
    )
    n = len(series.dots)
    subtitle = f"● one run ({n} in all) · ◆ mean per setting · above 0: the teacher helped"
    _titled(fig, BOARD_TITLES[series.axis], subtitle, height=400)
    fig.update_layout(showlegend=False)
    if series.axis == "student":
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=list(series.order))
    elif series.axis == "fraction":
        fig.update_xaxes(type="log", tickformat=".0%")
    fig.update_xaxes(title_text=series.label)
    _gain_axis(fig, [100 * d.gain for d in series.dots])
    if not series.dots:
        fig.add_annotation(
            text="no runs yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5, font=dict(size=18)
        )
    return fig
