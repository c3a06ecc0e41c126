-- One row per track (tracklet): its span, parents, children, how it starts and ends, generation and cell cycle.
-- depends: positions, tracks, frames, metadata, tracklet_links, tracklet_generations
--
-- start: 'root' (no parent), 'division' (its parent has 2+ children), 'merge' (2+ parents) or
-- 'continuation' (1 parent with 1 child: a track split). fate: 'divides' (2+ children), 'merges'
-- (its one child has other parents too), 'continues' (one child, only this parent) or 'ends'.
-- end_label: the position metadata 'ending' of its last position where the source has it
-- (OrganoidTracker: dead, shed, out_of_view, ...). A complete cell cycle is a track born by a
-- division that divides: cycle_frames = last_frame - first_frame + 1 (frames from birth to the
-- daughters' birth) and cycle_time = the daughters' first time - its first time, in time_unit.
CREATE OR REPLACE VIEW tracklet_summary AS
WITH cross_links AS MATERIALIZED (
  SELECT tl.session_id, tl.parent_track_id, tl.child_track_id, tl.child_frame
  FROM tracklet_links AS tl
),
span AS (
  SELECT p.session_id, p.track_id, count(*) AS n_positions, min(p.frame) AS first_frame, max(p.frame) AS last_frame
  FROM positions AS p
  WHERE p.track_id IS NOT NULL
  GROUP BY p.session_id, p.track_id
),
parents AS (
  SELECT tl.session_id, tl.child_track_id AS track_id, count(DISTINCT tl.parent_track_id) AS n_parents,
         min(tl.parent_track_id) AS parent_track_id
  FROM cross_links AS tl
  GROUP BY tl.session_id, tl.child_track_id
),
children AS (
  SELECT tl.session_id, tl.parent_track_id AS track_id, count(DISTINCT tl.child_track_id) AS n_children,
         max(pa.n_parents) AS most_child_parents, min(tl.child_frame) AS children_first_frame,
         array_agg(DISTINCT tl.child_track_id ORDER BY tl.child_track_id) AS child_track_ids
  FROM cross_links AS tl
  JOIN parents AS pa ON pa.session_id = tl.session_id AND pa.track_id = tl.child_track_id
  GROUP BY tl.session_id, tl.parent_track_id
),
ending AS (
  SELECT p.session_id, p.track_id, p.frame, m.v_str
  FROM positions AS p
  JOIN metadata AS m
    ON m.session_id = p.session_id AND m.scope = 'position' AND m.owner_id = p.position_id
   AND m.key = 'ending' AND m.vtype = 'str'
  WHERE p.track_id IS NOT NULL
),
base AS (
  SELECT t.session_id, t.track_id, t.lineage_id, t.name, s.n_positions, s.first_frame, s.last_frame,
         COALESCE(pa.n_parents, 0) AS n_parents,
         CASE WHEN pa.n_parents = 1 THEN pa.parent_track_id END AS parent_track_id,
         COALESCE(ch.n_children, 0) AS n_children, ch.child_track_ids, ch.children_first_frame,
         CASE WHEN pa.n_parents IS NULL THEN 'root'
              WHEN pa.n_parents >= 2 THEN 'merge'
              WHEN pch.n_children >= 2 THEN 'division'
              ELSE 'continuation' END AS start_kind,
         CASE WHEN ch.n_children >= 2 THEN 'divides'
              WHEN ch.n_children = 1 AND ch.most_child_parents >= 2 THEN 'merges'
              WHEN ch.n_children = 1 THEN 'continues'
              ELSE 'ends' END AS fate
  FROM tracks AS t
  JOIN span AS s ON s.session_id = t.session_id AND s.track_id = t.track_id
  LEFT JOIN parents AS pa ON pa.session_id = t.session_id AND pa.track_id = t.track_id
  LEFT JOIN children AS ch ON ch.session_id = t.session_id AND ch.track_id = t.track_id
  LEFT JOIN children AS pch
    ON pch.session_id = t.session_id AND pch.track_id = pa.parent_track_id AND pa.n_parents = 1
)
SELECT b.session_id, b.track_id, b.lineage_id, b.name, b.n_positions, b.first_frame, b.last_frame,
       ff.time AS first_time, lf.time AS last_time,
       b.n_parents, b.parent_track_id, b.n_children, b.child_track_ids, b.start_kind, b.fate,
       e.v_str AS end_label, g.generation, g.root_track_id,
       CASE WHEN b.start_kind = 'division' AND b.fate = 'divides'
            THEN b.last_frame - b.first_frame + 1 END AS cycle_frames,
       CASE WHEN b.start_kind = 'division' AND b.fate = 'divides' THEN cf.time - ff.time END AS cycle_time
FROM base AS b
LEFT JOIN frames AS ff ON ff.session_id = b.session_id AND ff.frame = b.first_frame
LEFT JOIN frames AS lf ON lf.session_id = b.session_id AND lf.frame = b.last_frame
LEFT JOIN frames AS cf ON cf.session_id = b.session_id AND cf.frame = b.children_first_frame
LEFT JOIN ending AS e ON e.session_id = b.session_id AND e.track_id = b.track_id AND e.frame = b.last_frame
LEFT JOIN tracklet_generations AS g ON g.session_id = b.session_id AND g.track_id = b.track_id
