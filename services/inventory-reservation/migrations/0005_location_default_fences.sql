-- Location-wide default fences ({"<channel>": {"fixed": n} | {"share_bp": n}}): a position's own fence
-- for a channel replaces the default for that channel. Effective fences: l.default_fences || s.fences.
alter table locations add column default_fences jsonb not null default '{}';
