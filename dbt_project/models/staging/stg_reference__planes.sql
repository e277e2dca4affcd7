with

source as (

    {{ select_reference_snapshot(source('raw', 'planes')) }}

)

select
    upper(trim(tailnum)) as tailnum,
    cast(year as integer) as year_built,
    type as aircraft_type,
    manufacturer,
    model,
    cast(engines as integer) as engines,
    cast(seats as integer) as seats,
    cast(speed as double precision) as speed,
    engine as engine_type,
    _data_date as snapshot_date,
    _source_file,
    _batch_id

from source
