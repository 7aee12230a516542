{{ landfall_staging('demo', 'orders') }}
