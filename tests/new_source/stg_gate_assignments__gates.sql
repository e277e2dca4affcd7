{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='data_date',
    )
}}

with

source as (

    {{ select_current_batch(source('raw', 'gate_assignments'), in_run_range('_data_date')) }}

)

select
    cast(flight_date as date) as flight_date,
    upper(trim(carrier)) as carrier,
    cast(flight as integer) as flight_number,
    upper(trim(origin)) as origin,
    upper(trim(gate)) as gate,
    _data_date as data_date,
    _source_file,
    _batch_id

from source
