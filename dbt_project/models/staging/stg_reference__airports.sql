with

source as (

    {{ select_reference_snapshot(source('raw', 'airports')) }}

)

select
    upper(trim(faa)) as faa,
    name as airport_name,
    cast(lat as double precision) as latitude,
    cast(lon as double precision) as longitude,
    cast(alt as integer) as altitude_ft,
    cast(tz as integer) as utc_offset_hours,
    dst as dst_rule,
    tzone as time_zone,
    _data_date as snapshot_date,
    _source_file,
    _batch_id

from source
