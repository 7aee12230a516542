{{ landfall.landfall_staging('demo', 'products') }}
