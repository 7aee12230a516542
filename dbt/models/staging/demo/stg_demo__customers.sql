{{ landfall_staging('demo', 'customers') }}
