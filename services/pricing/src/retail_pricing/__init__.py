"""The pricing service: system of record for products, price lists, change sets and effective prices."""
