-- Region of each location, replicated from inventory's LocationUpserted (the gateway already consumes
-- it), so a campaign targeting or excluding regions is delivered to the right stores of a POS store
-- group (domain/store_scope.py). A location not known here is matched by its id only.
create table location_regions (
    location_id text primary key,
    region_id   text not null
);
