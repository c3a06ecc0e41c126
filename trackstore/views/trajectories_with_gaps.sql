-- Every frame x every track of each session, with the located position or NULLs (idtracker.ai's "with gaps").
-- depends: frames, tracks, positions
--
-- One row per (session_id, track_id, frame) for every frame in `frames` and every track in `tracks`
-- of the same session. "Located" means a position of that track in that frame whose origin is not
-- 'gap_closed' (so 'observed' or 'validated'); where there is none, x, y, z, quality, position_id
-- and origin are NULL. Positions filled by the source tool ('gap_closed') show as NULL here: see
-- trajectories_without_gaps. Lone positions (track_id NULL) are not part of any track, so not here.
-- A track with several located positions in one frame (only possible for branching tracks) gives
-- one row per position. Plain SQL: the same text runs on DuckDB and PostgreSQL.
CREATE OR REPLACE VIEW trajectories_with_gaps AS
SELECT f.session_id, t.track_id, f.frame, f.time,
       p.x, p.y, p.z, p.quality, p.position_id, p.origin
FROM frames AS f
JOIN tracks AS t
  ON t.session_id = f.session_id
LEFT JOIN positions AS p
  ON p.session_id = f.session_id
 AND p.track_id = t.track_id
 AND p.frame = f.frame
 AND p.origin <> 'gap_closed'
