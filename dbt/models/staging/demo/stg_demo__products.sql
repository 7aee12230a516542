{{ landfall.landfall_staging('demo', 'products', snapshot_deletes=true) }}
