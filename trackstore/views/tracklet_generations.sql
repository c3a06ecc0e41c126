-- One row per track: its generation (divisions between its lineage's root and it) and that root.
-- depends: tracks, tracklet_links
--
-- Roots (tracks without a parent) are generation 0; a child of a division is one more than its
-- parent, the single child of a track split keeps its parent's generation. A track below a merge
-- takes the smallest generation over its parents (and the smallest root id among those).
CREATE OR REPLACE VIEW tracklet_generations AS
WITH RECURSIVE edges AS MATERIALIZED (
  SELECT DISTINCT tl.session_id, tl.parent_track_id, tl.child_track_id
  FROM tracklet_links AS tl
),
n_children AS (
  SELECT e.session_id, e.parent_track_id AS track_id, count(*) AS n
  FROM edges AS e
  GROUP BY e.session_id, e.parent_track_id
),
walk (session_id, track_id, root_track_id, generation) AS (
  SELECT t.session_id, t.track_id, t.track_id, CAST(0 AS INTEGER)
  FROM tracks AS t
  WHERE NOT EXISTS (SELECT 1 FROM edges AS p
                    WHERE p.session_id = t.session_id AND p.child_track_id = t.track_id)
  UNION
  SELECT w.session_id, tl.child_track_id, w.root_track_id,
         w.generation + CASE WHEN nc.n >= 2 THEN 1 ELSE 0 END
  FROM walk AS w
  JOIN edges AS tl ON tl.session_id = w.session_id AND tl.parent_track_id = w.track_id
  JOIN n_children AS nc ON nc.session_id = w.session_id AND nc.track_id = w.track_id
)
SELECT w.session_id, w.track_id, min(w.generation) AS generation, min(w.root_track_id) AS root_track_id
FROM walk AS w
GROUP BY w.session_id, w.track_id
