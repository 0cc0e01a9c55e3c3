module nativehello

go 1.22
