-- One step per link whose two ends are in the same track, with its geometry: the base of every kinematic query.
-- depends: links
--
-- frame/time are the source's; frame_gap > 1 for a step across a gap (speed is then the mean speed
-- over the gap). step_length = sqrt(dx^2 + dy^2 + dz^2) (dz counts as 0 in 2D), in the session's
-- space_unit. speed = step_length / time_gap in space_unit per time_unit (NULL when the session has
-- no frame times or the time gap is 0); speed_per_frame = step_length / frame_gap, always defined.
-- Links between tracks (divisions, merges) are not steps of any track and are left out.
-- Links store their track, source frame and length (migrations 0002, 0003), so this reads one table
-- and computes one division per row: kinematic queries aggregate stored columns instead of running
-- window functions or joins (DESIGN.md).
CREATE OR REPLACE VIEW track_steps AS
SELECT l.session_id, l.track_id, l.link_id, l.source_id, l.target_id,
       l.frame, l.frame_gap, l.time_gap, l.dx, l.dy, l.dz,
       l.step_length,
       l.step_length / NULLIF(l.time_gap, 0) AS speed,
       l.step_length / l.frame_gap AS speed_per_frame
FROM links AS l
WHERE l.track_id IS NOT NULL
