{{ landfall.landfall_staging('demo', 'orders') }}
