{{ landfall.landfall_staging('demo', 'customers') }}
