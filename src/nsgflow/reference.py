"""Choosing the reference frame: highest altitude, else the lowest and flattest background."""

from __future__ import annotations

import pandas as pd

__all__ = ["rank_references"]


def rank_references(stats: list[dict], min_star_fraction: float = 0.5) -> pd.DataFrame:
    """Rank candidate reference frames, best first.

    A candidate needs at least ``min_star_fraction`` of the median number of
    clean stars (and at least 10). Among candidates, the highest altitude
    (CENTALT or OBJCTALT) wins when every candidate has one: the least air, so the
    smallest and simplest gradient. Otherwise the frames are ordered by the sum
    of their ranks in background level and in background range (lowest and
    flattest first), then by more stars.

    Parameters
    ----------
    stats : list of dict
        Frame statistics as written by ``detect_stars`` (``frame``, ``stars_clean``,
        ``sky``, ``sky_range``, ``altitude``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per frame with the numbers behind the choice, ``eligible``,
        ``method`` and ``rank`` (1 = chosen).

    Examples
    --------
    >>> rows = [dict(frame="a", stars_clean=300, sky=900, sky_range=50, altitude=40.0),
    ...         dict(frame="b", stars_clean=280, sky=500, sky_range=30, altitude=65.0)]
    >>> rank_references(rows)["frame"].tolist()
    ['b', 'a']
    """
    table = pd.DataFrame(stats)
    for column in ("altitude", "sky", "sky_range", "noise"):
        if column not in table:
            table[column] = None
    needed = max(10.0, min_star_fraction * float(table["stars_clean"].median()))
    table["eligible"] = table["stars_clean"] >= needed
    if table.loc[table["eligible"], "altitude"].notna().all():
        table["method"] = "highest altitude"
        key = ["eligible", "altitude", "stars_clean"]
        ascending = [False, False, False]
    else:
        table["method"] = "lowest and flattest background"
        table["score"] = table["sky"].rank() + table["sky_range"].rank()
        key = ["eligible", "score", "stars_clean"]
        ascending = [False, True, False]
    table = table.sort_values([*key, "frame"], ascending=[*ascending, True], kind="stable")
    table.insert(0, "rank", range(1, len(table) + 1))
    columns = ["rank", "frame", "eligible", "method", "altitude", "sky", "sky_range", "stars_clean", "noise"]
    return table[[c for c in columns if c in table] + (["score"] if "score" in table else [])].reset_index(
        drop=True
    )
