with

source as (

    {{ select_reference_snapshot(source('raw', 'airlines')) }}

)

select
    upper(trim(carrier)) as carrier,
    name as airline_name,
    _data_date as snapshot_date,
    _source_file,
    _batch_id

from source
