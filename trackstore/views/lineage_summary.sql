-- One row per lineage (a connected family of tracks): its root, size, span, divisions, merges and depth.
-- depends: tracklet_summary
--
-- root_track_id is the lineage's first root track (earliest first frame, then lowest id); a lineage
-- joined by a merge has n_roots > 1. n_divisions counts tracks with 2+ children, n_merges tracks
-- with 2+ parents, n_leaves tracks without children; max_generation is the deepest division level.
CREATE OR REPLACE VIEW lineage_summary AS
WITH ranked AS (
  SELECT s.session_id, s.lineage_id, s.track_id,
         row_number() OVER (PARTITION BY s.session_id, s.lineage_id ORDER BY s.first_frame, s.track_id) AS k
  FROM tracklet_summary AS s
  WHERE s.lineage_id IS NOT NULL AND s.n_parents = 0
)
SELECT s.session_id, s.lineage_id, r.track_id AS root_track_id,
       count(*) FILTER (WHERE s.n_parents = 0) AS n_roots,
       count(*) AS n_tracks, sum(s.n_positions) AS n_positions,
       min(s.first_frame) AS first_frame, max(s.last_frame) AS last_frame,
       min(s.first_time) AS first_time, max(s.last_time) AS last_time,
       count(*) FILTER (WHERE s.n_children >= 2) AS n_divisions,
       count(*) FILTER (WHERE s.n_parents >= 2) AS n_merges,
       count(*) FILTER (WHERE s.n_children = 0) AS n_leaves,
       max(s.generation) AS max_generation
FROM tracklet_summary AS s
LEFT JOIN ranked AS r ON r.session_id = s.session_id AND r.lineage_id = s.lineage_id AND r.k = 1
WHERE s.lineage_id IS NOT NULL
GROUP BY s.session_id, s.lineage_id, r.track_id
