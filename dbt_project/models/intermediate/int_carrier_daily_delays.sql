{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='data_date',
    )
}}

-- depends_on: {{ ref('stg_flights__flights') }}
{{ daily_delay_counts(['carrier']) }}
