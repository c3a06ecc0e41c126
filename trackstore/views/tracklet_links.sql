-- One row per link that joins two different tracks: a parent tracklet ending and a child tracklet starting.
-- depends: links, positions
--
-- Tracks are tracklets (unbranched chains of positions), so every division (a parent with 2+
-- children), merge (a child with 2+ parents) and track split (1 parent, 1 child) is made of these
-- rows; the lineage views and queries walk them. Works for every format with links between tracks
-- (OrganoidTracker, TrackMate, CTC, GEFF); positions in no track are left out.
CREATE OR REPLACE VIEW tracklet_links AS
SELECT l.session_id, l.link_id,
       s.track_id AS parent_track_id, t.track_id AS child_track_id,
       l.source_id AS parent_position_id, l.target_id AS child_position_id,
       s.frame AS parent_frame, t.frame AS child_frame
FROM links AS l
JOIN positions AS s
  ON s.session_id = l.session_id AND s.position_id = l.source_id
JOIN positions AS t
  ON t.session_id = l.session_id AND t.position_id = l.target_id
WHERE s.track_id IS NOT NULL AND t.track_id IS NOT NULL AND s.track_id <> t.track_id
