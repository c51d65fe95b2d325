"""Charts drawn on the server as SVG shapes (no script, no inline style: CSS classes colour them)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from backend.history.schemas import VenueStats

WIDTH = 640
HEIGHT = 200
LEFT = 40
BOTTOM = 24


class Bar(msgspec.Struct, kw_only=True):
    x: float
    y: float
    w: float
    h: float
    css: str
    title: str


class Label(msgspec.Struct, kw_only=True):
    x: float
    y: float
    text: str


class Chart(msgspec.Struct, kw_only=True):
    width: int
    height: int
    bars: list[Bar]
    labels: list[Label]
    keys: list[str]
    summary: str  # the chart's text alternative (its figures in words)


def weekly_bars(stats: VenueStats, t: Callable[[str], str]) -> Chart:
    """Incidents per week, stacked by kind."""
    weeks = stats.by_week[-26:]
    top = max((w.count for w in weeks), default=0) or 1
    slot = (WIDTH - LEFT) / max(len(weeks), 1)
    plot = HEIGHT - BOTTOM - 10
    bars: list[Bar] = []
    labels = [Label(x=4, y=14, text=str(top)), Label(x=4, y=HEIGHT - BOTTOM, text="0")]
    kinds = sorted(stats.by_kind)
    for n, week in enumerate(weeks):
        x = LEFT + n * slot + slot * 0.15
        y: float = HEIGHT - BOTTOM
        for kind in kinds:
            count = week.by_kind.get(kind, 0)
            if not count:
                continue
            h = plot * count / top
            y -= h
            bars.append(
                Bar(
                    x=x,
                    y=y,
                    w=slot * 0.7,
                    h=h,
                    css=f"k-{kind}",
                    title=f"{week.week:%d.%m}: {t('kind.' + kind)} {count}",
                )
            )
        if len(weeks) <= 13 or n % 4 == 0:
            labels.append(Label(x=x, y=HEIGHT - 6, text=week.week.strftime("%d.%m")))
    summary = t("chart.weeks") + ": " + ("; ".join(f"{w.week:%d.%m} {w.count}" for w in weeks) or "0")
    return Chart(width=WIDTH, height=HEIGHT, bars=bars, labels=labels, keys=kinds, summary=summary)


def camera_bars(stats: VenueStats, t: Callable[[str], str]) -> Chart:
    """Per camera: the share the model rejected and the share judged false alarms (0-100 %)."""
    row = 22
    height = max(len(stats.cameras), 1) * row * 2 + 10
    bars: list[Bar] = []
    labels: list[Label] = []
    left = 160
    span = WIDTH - left - 50
    for n, camera in enumerate(stats.cameras):
        y = 5 + n * row * 2
        labels.append(Label(x=4, y=y + 14, text=camera.name[:24]))
        for m, (css, share, what) in enumerate(
            (
                ("k-other", camera.rejected_share, t("col.rejected_share")),
                ("k-fight", camera.false_alarm_share, t("col.false_alarm_share")),
            )
        ):
            value = share or 0.0
            bars.append(
                Bar(
                    x=left,
                    y=y + m * row,
                    w=max(span * value, 1),
                    h=row - 6,
                    css=css,
                    title=f"{camera.name}: {what} {value * 100:.0f} %",
                )
            )
            labels.append(Label(x=left + span * value + 6, y=y + m * row + 12, text=f"{value * 100:.0f} %"))
    summary = (
        t("chart.cameras")
        + ": "
        + (
            "; ".join(
                f"{c.name}: {t('col.rejected_share')} {(c.rejected_share or 0) * 100:.0f} %, "
                f"{t('col.false_alarm_share')} {(c.false_alarm_share or 0) * 100:.0f} %"
                for c in stats.cameras
            )
            or "—"
        )
    )
    return Chart(width=WIDTH, height=height, bars=bars, labels=labels, keys=[], summary=summary)
