{#- Generated from platform_assets/sources/sources.yml by `python -m platform_assets.sources.dbt_contract`; do not edit.
    source_contract(name) returns that source's key and columns: type, required, accepted, range,
    pattern and quarantined (rows breaking required/pattern are quarantined one by one). -#}
{% macro source_contract(source_name) %}
{%- set contracts -%}{% raw %}
{
  "flights": {"key": ["year", "month", "day", "carrier", "flight", "origin"], "columns": {
    "year": {"type": "INTEGER", "required": true, "range": [2013.0, 2013.0], "quarantined": false},
    "month": {"type": "INTEGER", "required": true, "range": [1.0, 12.0], "quarantined": false},
    "day": {"type": "INTEGER", "required": true, "range": [1.0, 31.0], "quarantined": false},
    "dep_time": {"type": "INTEGER", "required": false, "range": [1.0, 2400.0], "quarantined": false},
    "sched_dep_time": {"type": "INTEGER", "required": true, "range": [1.0, 2359.0], "quarantined": false},
    "dep_delay": {"type": "DOUBLE", "required": false, "range": [-120.0, 1800.0], "quarantined": false},
    "arr_time": {"type": "INTEGER", "required": false, "range": [1.0, 2400.0], "quarantined": false},
    "sched_arr_time": {"type": "INTEGER", "required": true, "range": [1.0, 2359.0], "quarantined": false},
    "arr_delay": {"type": "DOUBLE", "required": false, "range": [-120.0, 1800.0], "quarantined": false},
    "carrier": {"type": "VARCHAR", "required": true, "quarantined": false},
    "flight": {"type": "INTEGER", "required": true, "range": [1.0, 9999.0], "quarantined": false},
    "tailnum": {"type": "VARCHAR", "required": false, "quarantined": false},
    "origin": {"type": "VARCHAR", "required": true, "accepted": ["EWR", "JFK", "LGA"], "quarantined": false},
    "dest": {"type": "VARCHAR", "required": true, "quarantined": false},
    "air_time": {"type": "DOUBLE", "required": false, "range": [10.0, 800.0], "quarantined": false},
    "distance": {"type": "DOUBLE", "required": true, "range": [10.0, 5000.0], "quarantined": false},
    "hour": {"type": "INTEGER", "required": true, "range": [0.0, 23.0], "quarantined": false},
    "minute": {"type": "INTEGER", "required": true, "range": [0.0, 59.0], "quarantined": false},
    "time_hour": {"type": "TIMESTAMPTZ", "required": true, "quarantined": false}
  }},
  "weather": {"key": ["origin", "time_hour"], "columns": {
    "origin": {"type": "VARCHAR", "required": true, "accepted": ["EWR", "JFK", "LGA"], "quarantined": false},
    "year": {"type": "INTEGER", "required": true, "quarantined": false},
    "month": {"type": "INTEGER", "required": true, "range": [1.0, 12.0], "quarantined": false},
    "day": {"type": "INTEGER", "required": true, "range": [1.0, 31.0], "quarantined": false},
    "hour": {"type": "INTEGER", "required": true, "range": [0.0, 23.0], "quarantined": false},
    "temp": {"type": "DOUBLE", "required": false, "range": [-30.0, 120.0], "quarantined": false},
    "dewp": {"type": "DOUBLE", "required": false, "range": [-50.0, 90.0], "quarantined": false},
    "humid": {"type": "DOUBLE", "required": false, "range": [0.0, 100.0], "quarantined": false},
    "wind_dir": {"type": "DOUBLE", "required": false, "range": [0.0, 360.0], "quarantined": false},
    "wind_speed": {"type": "DOUBLE", "required": false, "range": [0.0, 200.0], "quarantined": false},
    "wind_gust": {"type": "DOUBLE", "required": false, "range": [0.0, 200.0], "quarantined": false},
    "precip": {"type": "DOUBLE", "required": false, "range": [0.0, 10.0], "quarantined": false},
    "pressure": {"type": "DOUBLE", "required": false, "range": [900.0, 1100.0], "quarantined": false},
    "visib": {"type": "DOUBLE", "required": false, "range": [0.0, 10.0], "quarantined": false},
    "time_hour": {"type": "TIMESTAMPTZ", "required": true, "quarantined": false}
  }},
  "bookings": {"key": ["booking_id"], "columns": {
    "booking_id": {"type": "VARCHAR", "required": true, "quarantined": true},
    "booked_on": {"type": "DATE", "required": true, "quarantined": false},
    "flight_date": {"type": "DATE", "required": true, "quarantined": true},
    "carrier": {"type": "VARCHAR", "required": true, "quarantined": false},
    "flight_number": {"type": "INTEGER", "required": true, "quarantined": true},
    "origin": {"type": "VARCHAR", "required": true, "accepted": ["EWR", "JFK", "LGA"], "quarantined": false},
    "dest": {"type": "VARCHAR", "required": true, "quarantined": false},
    "passenger_name": {"type": "VARCHAR", "required": true, "quarantined": true},
    "email": {"type": "VARCHAR", "required": true, "pattern": "[^@\\s]+@[^@\\s]+\\.[^@\\s.]+", "quarantined": true},
    "phone": {"type": "VARCHAR", "required": false, "quarantined": false},
    "date_of_birth": {"type": "DATE", "required": true, "quarantined": false},
    "loyalty_number": {"type": "VARCHAR", "required": false, "quarantined": false},
    "fare_class": {"type": "VARCHAR", "required": true, "accepted": ["economy", "premium_economy", "business", "first"], "quarantined": false},
    "fare_usd": {"type": "DOUBLE", "required": true, "range": [0.0, 20000.0], "quarantined": false}
  }},
  "planes": {"key": ["tailnum"], "columns": {
    "tailnum": {"type": "VARCHAR", "required": true, "quarantined": false},
    "year": {"type": "DOUBLE", "required": false, "range": [1930.0, 2014.0], "quarantined": false},
    "type": {"type": "VARCHAR", "required": false, "quarantined": false},
    "manufacturer": {"type": "VARCHAR", "required": false, "quarantined": false},
    "model": {"type": "VARCHAR", "required": false, "quarantined": false},
    "engines": {"type": "BIGINT", "required": false, "range": [1.0, 8.0], "quarantined": false},
    "seats": {"type": "BIGINT", "required": false, "range": [1.0, 900.0], "quarantined": false},
    "speed": {"type": "DOUBLE", "required": false, "quarantined": false},
    "engine": {"type": "VARCHAR", "required": false, "quarantined": false}
  }},
  "airports": {"key": ["faa"], "columns": {
    "faa": {"type": "VARCHAR", "required": true, "quarantined": false},
    "name": {"type": "VARCHAR", "required": true, "quarantined": false},
    "lat": {"type": "DOUBLE", "required": false, "range": [-90.0, 90.0], "quarantined": false},
    "lon": {"type": "DOUBLE", "required": false, "range": [-180.0, 180.0], "quarantined": false},
    "alt": {"type": "BIGINT", "required": false, "range": [-1500.0, 30000.0], "quarantined": false},
    "tz": {"type": "BIGINT", "required": false, "quarantined": false},
    "dst": {"type": "VARCHAR", "required": false, "quarantined": false},
    "tzone": {"type": "VARCHAR", "required": false, "quarantined": false}
  }},
  "airlines": {"key": ["carrier"], "columns": {
    "carrier": {"type": "VARCHAR", "required": true, "quarantined": false},
    "name": {"type": "VARCHAR", "required": true, "quarantined": false}
  }}
}
{% endraw %}{%- endset -%}
{%- set contracts = fromjson(contracts) -%}
{%- if source_name not in contracts -%}
  {{ exceptions.raise_compiler_error('source_contract: no source ' ~ source_name ~ ' in the generated contracts; if sources.yml has it, regenerate them: python -m platform_assets.sources.dbt_contract') }}
{%- endif -%}
{{ return(contracts[source_name]) }}
{% endmacro %}
