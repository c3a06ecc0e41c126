-- Tracked positions plus linear interpolation along every link that skips frames (idtracker.ai's "without gaps").
-- depends: positions, links
--
-- Rows, each labelled in `origin` with where it came from:
--   * every position that belongs to a track: 'observed', 'validated' or 'gap_closed' (filled by
--     the source tool, e.g. idtracker.ai's without_gaps / v6 gap closing); gap_length = 0;
--   * 'interpolated': for each link whose frame_gap > 1, one row per frame strictly between its
--     source and target frame, x = x_source + dx * (frame - frame_source) / frame_gap (same for y,
--     z), i.e. linear in frame number. Interior only: nothing before a track's first or after its
--     last position. gap_length = frame_gap - 1 (the number of frames the link skips), so
--     `WHERE gap_length <= :max_gap` keeps only gaps of at most max_gap frames (real rows have 0).
--     position_id and quality are NULL; link_id names the link that was filled.
-- The track of an interpolated row: the track of both ends when they share one; otherwise (a link
-- between two tracklets) the target's track, so a daughter that appears frames after its mother's
-- last position is interpolated from the mother along the division link, in the daughter's track.
-- Exception, a merge (the target has more than one incoming link): the source's track, so that
-- each merging track gets its own rows instead of piling up in the merged track.
-- Frames are integer steps: the interpolated frames are not checked against `frames` (when the
-- session's frames are complete, they are exactly the NULL cells of trajectories_with_gaps inside
-- a track). Lone positions (track_id NULL) are not here.
-- generate_series in a LATERAL join runs on DuckDB and PostgreSQL alike. `origin` is the
-- position_origin ENUM (it compares with string literals; cast it to VARCHAR to get text).
CREATE OR REPLACE VIEW trajectories_without_gaps AS
SELECT p.session_id, p.track_id, p.frame,
       p.x, p.y, p.z, p.quality, p.position_id, p.origin,
       0 AS gap_length, CAST(NULL AS BIGINT) AS link_id
FROM positions AS p
WHERE p.track_id IS NOT NULL
UNION ALL
SELECT i.session_id, i.track_id, i.frame, i.x, i.y, i.z, i.quality, i.position_id, i.origin,
       i.gap_length, i.link_id
FROM (
  SELECT l.session_id,
         CASE
           WHEN s.track_id = t.track_id THEN s.track_id
           WHEN s.track_id IS NOT NULL
            AND EXISTS (SELECT 1 FROM links AS m
                        WHERE m.session_id = l.session_id AND m.target_id = l.target_id
                          AND m.link_id <> l.link_id) THEN s.track_id
           ELSE COALESCE(t.track_id, s.track_id)
         END AS track_id,
         g.frame,
         s.x + l.dx * (g.frame - s.frame) / l.frame_gap AS x,
         s.y + l.dy * (g.frame - s.frame) / l.frame_gap AS y,
         s.z + l.dz * (g.frame - s.frame) / l.frame_gap AS z,
         CAST(NULL AS DOUBLE PRECISION) AS quality,
         CAST(NULL AS BIGINT) AS position_id,
         CAST('interpolated' AS position_origin) AS origin,
         l.frame_gap - 1 AS gap_length,
         l.link_id
  FROM links AS l
  JOIN positions AS s
    ON s.session_id = l.session_id AND s.position_id = l.source_id
  JOIN positions AS t
    ON t.session_id = l.session_id AND t.position_id = l.target_id
  CROSS JOIN LATERAL generate_series(s.frame + 1, s.frame + l.frame_gap - 1) AS g(frame)
  WHERE l.frame_gap > 1
) AS i
WHERE i.track_id IS NOT NULL
