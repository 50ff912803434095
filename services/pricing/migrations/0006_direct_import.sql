-- Imports COPY screened rows straight into change_set_items (the direct path, repository/imports.py).
-- The primary key's btree insert per row cost more than the rest of such a COPY, so items get a BRIN
-- index instead: a change set's items are written whole, by one writer (replace_items or an import, in
-- the change set's transaction), numbered 0..n-1 in order, and appended together, so block ranges
-- summarise them tightly and a page of items is a position range (repository/change_sets.py relies on
-- the numbering having no gaps). A NULL min_quantity means 1 (COPY reads an empty cell as NULL). The currency the file states is kept for the check against the list's
-- currency after the COPY. A window ending at or before its start is refused by the table itself, during
-- the COPY (NOT VALID: existing rows were validated when written; checking them would scan the table).
alter table change_set_items drop constraint change_set_items_pkey;
create index change_set_items_range on change_set_items
    using brin (change_set_id, position) with (pages_per_range = 16, autosummarize = on);
alter table change_set_items add column currency_code text;
alter table change_set_items
    add constraint change_set_items_absolute_window check (end_abs > start_abs) not valid,
    add constraint change_set_items_local_window check (end_local > start_local) not valid;
