-- One row per division: the mother track, where and when it divided, and its daughters.
-- depends: tracklet_summary, positions
--
-- frame/time are the mother's last frame; x, y, z her last position; daughter_track_ids the tracks
-- that start from her (2 or more); generation is the mother's.
CREATE OR REPLACE VIEW division_events AS
SELECT s.session_id, s.lineage_id, s.track_id AS parent_track_id, s.last_frame AS frame, s.last_time AS time,
       s.n_children AS n_daughters, s.child_track_ids AS daughter_track_ids, s.generation,
       p.x, p.y, p.z
FROM tracklet_summary AS s
JOIN positions AS p
  ON p.session_id = s.session_id AND p.track_id = s.track_id AND p.frame = s.last_frame
WHERE s.n_children >= 2
