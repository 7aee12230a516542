{{ landfall_staging('demo', 'products') }}
