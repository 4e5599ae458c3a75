module uswitch

go 1.26.8
