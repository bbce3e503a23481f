"""Plotting helpers shared by every lesson: one style, and plots a reader understands without the code.

Each helper draws onto a matplotlib `Axes` you pass in (so a figure can hold several panels) and
returns what it drew. The rules they help with: a title that states the finding, labelled axes
with units, a legend when there is more than one series, log scales when values span orders of
magnitude. Headless-safe: importing this module never opens a window (the Agg backend is used
unless a display backend was chosen before).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3",
           "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]


def apply_style() -> None:
    """The one consistent look of every lesson's figures."""
    plt.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": 120,
        "savefig.bbox": "tight",
        "font.size": 10,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "axes.labelsize": 10,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
        "legend.fontsize": 9,
        "legend.frameon": False,
        "figure.constrained_layout.use": True,
    })


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
               suptitle: str | None = None):
    """A styled figure and its axes (`squeeze` as in `plt.subplots`).

    Raises ValueError unless nrows and ncols are >= 1.
    """
    if nrows < 1 or ncols < 1:
        raise ValueError(f"nrows and ncols must be >= 1, got {nrows}, {ncols}")
    apply_style()
    if figsize is None:
        figsize = (5.0 * ncols + 0.5, 4.0 * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize)
    if suptitle:
        fig.suptitle(suptitle, fontweight="bold")
    return fig, axes


def _as_array(matrix) -> np.ndarray:
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().float().cpu().numpy()
    return np.asarray(matrix, dtype=float)


def heatmap(ax, matrix, *, row_labels: Sequence[str] | None = None,
            col_labels: Sequence[str] | None = None, title: str = "", xlabel: str = "",
            ylabel: str = "", cbar_label: str = "", cmap: str = "viridis", vmin: float | None = None,
            vmax: float | None = None, annotate: bool = False, fmt: str = ".2f"):
    """A 2-D matrix as colours, with tick labels and a labelled colour bar.

    Raises ValueError unless matrix is 2-D and row_labels / col_labels (when given) have one label per row /
    column.
    """
    data = _as_array(matrix)
    if data.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {data.shape}")
    im = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    cbar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if cbar_label:
        cbar.set_label(cbar_label)
    ax.grid(False)
    for labels, n, setter, rot in ((col_labels, data.shape[1], "x", 90), (row_labels, data.shape[0], "y", 0)):
        if labels is None:
            continue
        if len(labels) != n:
            raise ValueError(f"{setter} tick labels: expected {n}, got {len(labels)}")
        ticks = np.arange(n)
        if setter == "x":
            ax.set_xticks(ticks, labels=list(labels), rotation=rot, fontsize=8)
        else:
            ax.set_yticks(ticks, labels=list(labels), fontsize=8)
    if annotate:
        finite = data[np.isfinite(data)]
        mid = (finite.max() + finite.min()) / 2 if finite.size else 0.0
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=7,
                        color="white" if data[i, j] < mid else "black")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return im


def line_plot(ax, x, series, *, title: str = "", xlabel: str = "", ylabel: str = "",
              logx: bool = False, logy: bool = False, markers: bool = True, styles: Mapping | None = None):
    """Several curves on one axes.

    `series` is a dict label -> y values (or a single sequence). `x` is shared, or a dict label -> x
    when the series have different x values. `styles` optionally maps label -> plot kwargs.
    Raises ValueError for a series whose x and y values differ in shape.
    """
    if not isinstance(series, Mapping):
        series = {"": series}
    for i, (label, ys) in enumerate(series.items()):
        xs = x[label] if isinstance(x, Mapping) else x
        ys = _as_array(ys)
        xs = _as_array(xs)
        if xs.shape != ys.shape:
            raise ValueError(f"series {label!r}: x has shape {xs.shape}, y has shape {ys.shape}")
        kwargs = {"marker": "o" if markers and len(ys) <= 40 else None, "markersize": 4,
                  "color": PALETTE[i % len(PALETTE)], "label": label or None}
        if styles and label in styles:
            kwargs.update(styles[label])
        ax.plot(xs, ys, **kwargs)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if any(label for label in series):
        ax.legend()
    return ax


def bar_plot(ax, labels: Sequence[str], values, *, title: str = "", xlabel: str = "", ylabel: str = "",
             annotate: bool = True, fmt: str = "{:.3g}", errors=None, colors=None, horizontal: bool = False):
    """One bar per label, each annotated with its value.

    Raises ValueError unless labels and values have the same length.
    """
    values = _as_array(values)
    if len(labels) != len(values):
        raise ValueError(f"labels and values differ in length: {len(labels)} vs {len(values)}")
    positions = np.arange(len(values))
    colors = colors or [PALETTE[i % len(PALETTE)] for i in range(len(values))]
    if horizontal:
        bars = ax.barh(positions, values, xerr=errors, color=colors)
        ax.set_yticks(positions, labels=list(labels))
        ax.invert_yaxis()
    else:
        bars = ax.bar(positions, values, yerr=errors, color=colors)
        ax.set_xticks(positions, labels=list(labels), rotation=30 if max(map(len, labels), default=0) > 8
                      else 0, ha="right" if max(map(len, labels), default=0) > 8 else "center")
    if annotate:
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=8, padding=2)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return bars


def scatter_plot(ax, points, *, labels: Sequence[str] | None = None, colors=None, title: str = "",
                 xlabel: str = "", ylabel: str = "", annotate_max: int = 40, legend_labels=None):
    """2-D points, the first `annotate_max` of them labelled with their text.

    Raises ValueError unless points has shape (N, 2).
    """
    pts = _as_array(points)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    sc = ax.scatter(pts[:, 0], pts[:, 1], c=colors, s=18, alpha=0.8, cmap="tab10" if colors is not None
                    and not isinstance(colors, str) else None)
    if labels is not None:
        for (px, py), text in list(zip(pts, labels))[:annotate_max]:
            ax.annotate(text, (px, py), fontsize=8, xytext=(3, 3), textcoords="offset points")
    if legend_labels is not None:
        handles = [plt.Line2D([], [], marker="o", ls="", color=plt.cm.tab10(i), label=name)
                   for i, name in enumerate(legend_labels)]
        ax.legend(handles=handles)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return sc


def _visible(token: str) -> str:
    """Make whitespace visible in a token: space -> '·', newline -> '⏎', tab -> '→'."""
    return token.replace(" ", "\u00b7").replace("\n", "\u23ce").replace("\t", "\u2192")


def token_strip(ax, tokens: Sequence[str], *, title: str = "", ids: Sequence[int] | None = None,
                chars_per_line: int = 60, fontsize: int = 10):
    """Draw text as its tokens: each token on its own coloured background, wrapping into lines.

    Spaces are drawn as '·' and newlines as '⏎' so that token boundaries are visible. With `ids`,
    each token's id is printed small underneath.
    Raises ValueError unless ids (when given) has one id per token.
    """
    if ids is not None and len(ids) != len(tokens):
        raise ValueError(f"ids and tokens differ in length: {len(ids)} vs {len(tokens)}")
    ax.set_axis_off()
    ax.grid(False)
    x, line = 0, 0
    char_w, line_h = 1.0, 2.6 if ids is not None else 1.6
    rows = []
    for i, token in enumerate(tokens):
        text = _visible(token)
        width = max(len(text), 1)
        if x + width > chars_per_line and x > 0:
            x, line = 0, line + 1
        rows.append((x, line, text, width, i))
        x += width + 0.4
    n_lines = line + 1
    for x0, ln, text, width, i in rows:
        y = -ln * line_h
        color = PALETTE[i % len(PALETTE)]
        ax.add_patch(plt.Rectangle((x0 - 0.1, y - 0.45), width * char_w + 0.2, 0.95,
                                   facecolor=color, alpha=0.35, edgecolor=color, linewidth=0.8))
        ax.text(x0, y, text, fontsize=fontsize, family="monospace", va="center", ha="left")
        if ids is not None:
            ax.text(x0, y - 0.95, str(ids[i]), fontsize=6, family="monospace", va="center",
                    ha="left", color="#444444")
    ax.set_xlim(-0.5, chars_per_line + 1)
    ax.set_ylim(-(n_lines - 1) * line_h - (1.6 if ids is not None else 0.8), 0.9)
    ax.set_title(title)
    return ax


QUICK_MODE_NOTE = "QUICK MODE (--quick): a small, short run to check that the demo works, not its results"


def mark_quick_mode(fig) -> None:
    """Say in the figure's title that it comes from a quick-mode run (DESIGN §8), once: the note goes
    above the figure's suptitle (or becomes it), unless a title already says "quick mode"."""
    titles = [fig.get_suptitle()] + [ax.get_title() for ax in fig.axes]
    if any("quick mode" in title.lower() for title in titles):
        return
    old = fig.get_suptitle()
    fig.suptitle(f"{QUICK_MODE_NOTE}\n{old}" if old else QUICK_MODE_NOTE, color="#C44E52",
                 fontweight="bold")


def save_figure(fig, path: str | os.PathLike, *, close: bool = True) -> Path:
    """Save a figure as PNG (creating the folder) and close it, so long demos do not leak memory."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    if close:
        plt.close(fig)
    return path


def grouped_bar_plot(ax, labels: Sequence[str], series: Mapping[str, Sequence[float]], *,
                     horizontal: bool = False, width: float = 0.8, colors: Sequence[str] | None = None,
                     fmt: str | None = None, title: str = "", xlabel: str = "", ylabel: str = "",
                     legend_title: str | None = None, headroom: float | None = None, fontsize: int = 8,
                     padding: float = 2, rotation: float = 0):
    """Several bars per label, one per series side by side (e.g. lab vs torch per operation), with a
    legend; `width` is the width of one label's group. fmt: annotate each bar with its value
    ("{:.2f}", or printf style "%.2f"); rotation: of the labels; headroom: the value axis reaches the
    tallest bar times this, and the legend sits centred in that room (vertical bars). Returns the bar
    containers, one per series. Raises ValueError for no series or a series without one value per label."""
    if not series:
        raise ValueError("series must hold at least one name -> values")
    positions = np.arange(len(labels))
    bar_width = width / len(series)
    containers = []
    for i, (name, values) in enumerate(series.items()):
        values = _as_array(values)
        if len(values) != len(labels):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(labels)} labels")
        offset = (i - (len(series) - 1) / 2) * bar_width
        color = colors[i] if colors else PALETTE[i % len(PALETTE)]
        draw = ax.barh if horizontal else ax.bar
        bars = draw(positions + offset, values, bar_width, label=name, color=color)
        if fmt is not None:
            texts = [fmt % v if "%" in fmt and "{" not in fmt else fmt.format(v) for v in values]
            ax.bar_label(bars, labels=texts, fontsize=fontsize, padding=padding)
        containers.append(bars)
    if horizontal:
        ax.set_yticks(positions, labels=list(labels))
        ax.invert_yaxis()
    else:
        ax.set_xticks(positions, labels=list(labels), rotation=rotation)
    if headroom is not None and not horizontal:
        ax.set_ylim(0, max(float(np.max(_as_array(v))) for v in series.values()) * headroom)
        ax.legend(title=legend_title, loc="upper center", ncol=len(series))
    else:
        ax.legend(title=legend_title)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return containers


def count_ticks(ax, counts: Sequence[int]) -> None:
    """Readable x ticks on a log axis of counts (characters, tokens): 4K, 16K, 1M instead of 4x10^3."""
    from matplotlib.ticker import NullFormatter

    ax.set_xticks(counts, labels=[f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}K" for n in counts])
    ax.xaxis.set_minor_formatter(NullFormatter())


def loss_curve_plot(ax, history, *, label: str, color, window: int, val_fmt: str = "o-",
                    train_label: str = " (train)", val_label: str = " (val)", **train_style):
    """A training run's curves: the train loss as a `window`-step moving average (a line) and the val
    loss at each evaluation (markers). `history` has .steps, .train_loss, .eval_steps, .val_loss.
    Raises ValueError for window < 1."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    smooth = np.convolve(history.train_loss, np.ones(window) / window, mode="valid")
    ax.plot(list(history.steps)[window - 1:], smooth, color=color, label=label + train_label, **train_style)
    ax.plot(history.eval_steps, history.val_loss, val_fmt, color=color, ms=4, label=label + val_label)


def log_count_axis(ax, values: Sequence[float], *, labels: Sequence[str] | None = None, base: float = 2,
                   axis: str = "x", invert: bool = False):
    """A log-scaled axis whose ticks are exactly `values` (counts that double or halve: experts, K/V heads,
    cache fractions), labelled with them or with `labels`, without minor ticks in between; `invert` puts
    the largest value first (e.g. from MHA's many K/V heads down to MQA's one).

    Raises ValueError unless axis is 'x' or 'y' and labels (when given) has one label per value."""
    from matplotlib.ticker import NullLocator

    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    values = list(values)
    labels = [f"{v:g}" for v in values] if labels is None else list(labels)
    if len(labels) != len(values):
        raise ValueError(f"labels and values differ in length: {len(labels)} vs {len(values)}")
    getattr(ax, f"set_{axis}scale")("log", base=base)
    getattr(ax, f"set_{axis}ticks")(values, labels=labels)
    getattr(ax, f"{axis}axis").set_minor_locator(NullLocator())
    if invert:
        getattr(ax, f"invert_{axis}axis")()
    return ax


def plain_log_axis(axis, *, scale: str = "log") -> None:
    """Put one axis (`ax.xaxis` or `ax.yaxis`) on a log (or "logit") scale labelled with plain numbers
    (0.1, 1, 10, 100; 0.9, 0.99): they read faster than 10^k, and draw faster.

    Raises ValueError unless scale is 'log' or 'logit'."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if scale not in ("log", "logit"):
        raise ValueError(f"scale must be 'log' or 'logit', got {scale!r}")
    getattr(axis.axes, f"set_{axis.axis_name}scale")(scale)
    if scale == "log":
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def band_plot(ax, x, quantiles, *, color: int = 0, band_labels: Sequence[str] = ("IQR",),
              label: str = "median"):
    """A distribution at each x (over contexts, seeds, ...): its median as a line inside nested
    percentile bands.

    `quantiles` has shape (len(x), 2k + 1): percentiles from low to high with the median in the middle
    (e.g. P25, P50, P75, or P10, P25, P50, P75, P90); band i spans columns i and -1 - i and is labelled
    `band_labels[i]`, outermost first (k labels). `color` is an index into PALETTE.
    Raises ValueError unless quantiles has shape (len(x), 2·len(band_labels) + 1).
    """
    q = _as_array(quantiles)
    k = len(band_labels)
    if q.ndim != 2 or q.shape != (len(x), 2 * k + 1):
        raise ValueError(f"quantiles must have shape ({len(x)}, {2 * k + 1}) for {k} band label(s), "
                         f"got {q.shape}")
    shade = PALETTE[color % len(PALETTE)]
    for i, band in enumerate(band_labels):
        alpha = 0.25 if k == 1 else 0.15 + 0.2 * i / (k - 1)  # inner bands darker
        ax.fill_between(x, q[:, i], q[:, -1 - i], alpha=alpha, color=shade, label=band)
    return ax.plot(x, q[:, k], "o-", ms=3, color=shade, label=label)
