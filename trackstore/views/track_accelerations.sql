-- Acceleration at each position between two consecutive steps of one track (the step in and the step out).
-- depends: track_steps
--
-- For the step in (a -> b, velocity v1 = (dx, dy, dz) / time_gap) and the step out (b -> c, v2):
-- (ax, ay, az) = (v2 - v1) / dt with dt = (time_gap_in + time_gap_out) / 2, the time between the
-- steps' midpoints; acceleration = |(ax, ay, az)| in space_unit per time_unit^2. For unit time
-- steps this is the second difference of the positions. NULL where a time gap is NULL or 0;
-- az is NULL in 2D and counts as 0 in the magnitude. position_id/frame are b's. A position with
-- two steps out (a division inside one track, for formats whose tracks branch) has one row per pair.
CREATE OR REPLACE VIEW track_accelerations AS
SELECT a.session_id, a.track_id, a.target_id AS position_id, b.frame,
       a.link_id AS link_in, b.link_id AS link_out,
       (a.time_gap + b.time_gap) / 2 AS dt,
       (b.dx / NULLIF(b.time_gap, 0) - a.dx / NULLIF(a.time_gap, 0)) / NULLIF((a.time_gap + b.time_gap) / 2, 0) AS ax,
       (b.dy / NULLIF(b.time_gap, 0) - a.dy / NULLIF(a.time_gap, 0)) / NULLIF((a.time_gap + b.time_gap) / 2, 0) AS ay,
       (b.dz / NULLIF(b.time_gap, 0) - a.dz / NULLIF(a.time_gap, 0)) / NULLIF((a.time_gap + b.time_gap) / 2, 0) AS az,
       sqrt(
         power((b.dx / NULLIF(b.time_gap, 0) - a.dx / NULLIF(a.time_gap, 0)), 2)
         + power((b.dy / NULLIF(b.time_gap, 0) - a.dy / NULLIF(a.time_gap, 0)), 2)
         + COALESCE(power((b.dz / NULLIF(b.time_gap, 0) - a.dz / NULLIF(a.time_gap, 0)), 2), 0)
       ) / NULLIF((a.time_gap + b.time_gap) / 2, 0) AS acceleration
FROM track_steps AS a
JOIN track_steps AS b
  ON b.session_id = a.session_id AND b.source_id = a.target_id AND b.track_id = a.track_id
