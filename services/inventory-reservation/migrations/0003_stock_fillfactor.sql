-- Leave room on each page so the frequent updates of a position (holds, movements, snapshots) can be
-- HOT updates (no index maintenance): none of the updated columns is indexed.
alter table stock set (fillfactor = 70);
