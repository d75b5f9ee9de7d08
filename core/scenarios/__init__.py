"""Running the lab's scenarios against the kernel: the one place that joins the lab (sockets we drive,
``sockmon.core.lab.scenarios``) and the socket table (``sockmon.core.table``). Neither imports this."""
